"""Step Notify (``lambda_handlers/notify.py``): report the run's outcome, success or failure, to SNS."""

from __future__ import annotations

from lambda_handlers import notify, settings
from stacks.steps.step_spec import Grant, StepSpec

NOTIFY = StepSpec(
    handler=notify.notify,
    description="Reports the run's outcome to SNS",
    variables=(settings.TOPIC_ARN,),
    permissions=lambda r: (
        Grant(
            r.topic.grant_publish,
            ("kms:GenerateDataKey*",),
            why="grant_publish on the KMS-encrypted notification topic writes kms:GenerateDataKey* for its key only",
        ),
    ),
)
