"""Steps StartPreparation and CheckPreparation (``lambda_handlers/preparation.py``): raw images → channels."""

from __future__ import annotations

from collections.abc import Sequence

from lambda_handlers import preparation, settings
from stacks.steps.step_spec import (
    OWN_JOBS,
    Allow,
    Grant,
    Permission,
    StepResources,
    StepSpec,
    list_artifacts,
    start_sagemaker_job,
)


def _processing_jobs(r: StepResources) -> str:
    return r.own_jobs("processing-job", "prep")


def _start(r: StepResources) -> Sequence[Permission]:
    return start_sagemaker_job(
        r,
        "StartProcessingJob",
        "ProcessingJob",
        _processing_jobs(r),
        r.preparation_script,
        "StagePreparationScript",
        "processing/prepare.py",
    )


START_PREPARATION = StepSpec(
    handler=preparation.start_preparation,
    description="Starts (or adopts) the SageMaker Processing job that prepares raw images",
    variables=(
        settings.ARTIFACTS_BUCKET,
        settings.ARTIFACTS_KEY_ARN,
        settings.SAGEMAKER_ROLE_ARN,
        settings.PROCESSING_IMAGE,
        settings.PREPARATION_SCRIPT,
    ),
    permissions=_start,
)

CHECK_PREPARATION = StepSpec(
    handler=preparation.check_preparation,
    description="Polls the preparation job and reads its report",
    permissions=lambda r: (
        Allow(
            "PollProcessingJob",
            ("sagemaker:DescribeProcessingJob", "sagemaker:StopProcessingJob"),
            (_processing_jobs(r),),
            OWN_JOBS,
        ),
        Allow(
            "ReadPreparationReport",
            ("s3:GetObject",),
            (r.artifacts.arn_for_objects("runs/*/prepared/report.json"),),
            "one report per run, runs/<run>/prepared/report.json in the pipeline's artifacts bucket",
        ),
        list_artifacts(r),
        Grant(r.key.grant_decrypt),  # the report is encrypted with the artifacts key
    ),
)
