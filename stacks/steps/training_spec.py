"""Steps StartTraining, CheckTraining and Evaluate (``lambda_handlers/training.py``): train and gate."""

from __future__ import annotations

from collections.abc import Sequence

from lambda_handlers import settings, training
from stacks.steps.step_spec import (
    OWN_JOBS,
    Allow,
    Permission,
    StepResources,
    StepSpec,
    start_sagemaker_job,
)


def _training_jobs(r: StepResources) -> str:
    return r.own_jobs("training-job", "train")


def _start(r: StepResources) -> Sequence[Permission]:
    return start_sagemaker_job(
        r,
        "StartTrainingJob",
        "TrainingJob",
        _training_jobs(r),
        r.training_source,
        "StageSourceArchive",
        "the script-mode source archive",
    )


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
