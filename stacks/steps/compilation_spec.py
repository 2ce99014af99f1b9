"""Steps StartCompilation and CheckCompilation (``lambda_handlers/compilation.py``): the Neo gate."""

from __future__ import annotations

from lambda_handlers import compilation, settings
from stacks.steps.step_spec import OWN_JOBS, Allow, StepResources, StepSpec, pass_role


def _compilation_jobs(r: StepResources) -> str:
    return r.own_jobs("compilation-job", "neo")


START_COMPILATION = StepSpec(
    handler=compilation.start_compilation,
    description="Starts (or adopts) the SageMaker Neo compilation job",
    variables=(settings.ARTIFACTS_BUCKET, settings.ARTIFACTS_KEY_ARN, settings.SAGEMAKER_ROLE_ARN),
    permissions=lambda r: (
        Allow(
            "StartCompilationJob",
            ("sagemaker:CreateCompilationJob", "sagemaker:DescribeCompilationJob"),
            (_compilation_jobs(r),),
            OWN_JOBS,
        ),
        pass_role(r.sagemaker_role, "sagemaker.amazonaws.com"),
    ),
)

CHECK_COMPILATION = StepSpec(
    handler=compilation.check_compilation,
    description="Polls the compilation job",
    permissions=lambda r: (
        Allow(
            "PollCompilationJob",
            ("sagemaker:DescribeCompilationJob", "sagemaker:StopCompilationJob"),
            (_compilation_jobs(r),),
            OWN_JOBS,
        ),
    ),
)
