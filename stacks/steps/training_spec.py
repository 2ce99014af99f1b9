"""Steps StartTraining, CheckTraining and Evaluate (``lambda_handlers/training.py``): train and gate."""

from __future__ import annotations

from collections.abc import Sequence

from lambda_handlers import settings, training
from stacks.steps.step_spec import (
    GRANT_READ_ACTIONS,
    KMS_WRITE_ACTIONS,
    OWN_JOBS,
    Allow,
    Grant,
    Permission,
    StepResources,
    StepSpec,
    pass_role,
)


def _training_jobs(r: StepResources) -> str:
    return r.own_jobs("training-job", "train")


def _start(r: StepResources) -> Sequence[Permission]:
    found: list[Permission] = [
        Allow(
            "StartTrainingJob",
            ("sagemaker:CreateTrainingJob", "sagemaker:DescribeTrainingJob"),
            (_training_jobs(r),),
            OWN_JOBS,
        )
    ]
    source = r.training_source
    if source is not None:  # script mode: the source archive is copied into the artifacts bucket
        found += [
            Grant(
                source.grant_read,
                GRANT_READ_ACTIONS,
                (source.bucket.arn_for_objects("*"),),
                "grant_read on the CDK asset that holds the script-mode source archive (copied to artifacts)",
            ),
            Allow(
                "StageSourceArchive",
                ("s3:GetObject", "s3:PutObject"),
                (r.artifacts.arn_for_objects("code/*"),),
                "one copy of each source archive, named by its asset hash, under code/ in the artifacts bucket",
            ),
            Allow("ListArtifactsForSource", ("s3:ListBucket",), (r.artifacts.bucket_arn,)),
            Grant(
                r.key.grant_encrypt_decrypt,
                KMS_WRITE_ACTIONS,
                why="grant_encrypt_decrypt on the artifacts bucket key only, to write the source archive copy",
            ),
        ]
    found.append(pass_role(r.sagemaker_role, "sagemaker.amazonaws.com"))
    return found


START_TRAINING = StepSpec(
    handler=training.start_training,
    description="Starts (or adopts) the SageMaker training job",
    variables=(
        settings.ARTIFACTS_BUCKET,
        settings.ARTIFACTS_KEY_ARN,
        settings.SAGEMAKER_ROLE_ARN,
        settings.TRAINING_IMAGE,
        settings.TRAINING_SOURCE,
    ),
    permissions=_start,
)

CHECK_TRAINING = StepSpec(
    handler=training.check_training,
    description="Polls the training job",
    permissions=lambda r: (
        Allow(
            "PollTrainingJob",
            ("sagemaker:DescribeTrainingJob", "sagemaker:StopTrainingJob"),
            (_training_jobs(r),),
            OWN_JOBS,
        ),
    ),
)

EVALUATE = StepSpec(
    handler=training.evaluate,
    description="Applies the metric gate",
    permissions=lambda r: (Allow("ReadMetrics", ("sagemaker:DescribeTrainingJob",), (_training_jobs(r),), OWN_JOBS),),
)
