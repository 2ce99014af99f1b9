"""Steps StartPreparation and CheckPreparation (``lambda_handlers/preparation.py``): raw images → channels."""

from __future__ import annotations

from collections.abc import Sequence

from lambda_handlers import preparation, settings
from stacks.steps.step_spec import (
    GRANT_READ_ACTIONS,
    OWN_JOBS,
    Allow,
    Grant,
    Permission,
    StepResources,
    StepSpec,
    list_artifacts,
    pass_role,
    write_encrypted,
)


def _processing_jobs(r: StepResources) -> str:
    return r.own_jobs("processing-job", "prep")


def _start(r: StepResources) -> Sequence[Permission]:
    found: list[Permission] = [
        Allow(
            "StartProcessingJob",
            ("sagemaker:CreateProcessingJob", "sagemaker:DescribeProcessingJob"),
            (_processing_jobs(r),),
            OWN_JOBS,
        )
    ]
    script = r.preparation_script
    if script is not None:  # the script is copied from its CDK asset into the artifacts bucket
        found += [
            Grant(
                script.grant_read,
                GRANT_READ_ACTIONS,
                (script.bucket.arn_for_objects("*"),),
                "grant_read on the CDK asset that holds processing/prepare.py (copied to artifacts)",
            ),
            Allow(
                "StagePreparationScript",
                ("s3:GetObject", "s3:PutObject"),
                (r.artifacts.arn_for_objects("code/*"),),
                "one copy of the script per asset hash, under code/ in the artifacts bucket",
            ),
            list_artifacts(r),
            write_encrypted(r),
        ]
    found.append(pass_role(r.sagemaker_role, "sagemaker.amazonaws.com"))
    return found


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
