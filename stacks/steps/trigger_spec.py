"""The trigger (``lambda_handlers/trigger.py``): starts one run per data set version; not a state of the machine."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import ArnFormat, Stack

from lambda_handlers import settings, trigger
from stacks.steps.step_spec import GRANT_READ_ACTIONS, Allow, Grant, Permission, StepResources, StepSpec


def _permissions(r: StepResources) -> Sequence[Permission]:
    assert r.state_machine is not None, "the trigger is made after the state machine it starts"
    executions = Stack.of(r.scope).format_arn(
        service="states",
        resource="execution",
        arn_format=ArnFormat.COLON_RESOURCE_NAME,
        resource_name=f"{r.state_machine_name}:*",
    )
    markers = f"{r.config.runs.dataset_prefix}*"
    return (
        Grant(r.state_machine.grant_start_execution),
        Allow(
            "DescribeRunsOfThisMachine",
            ("states:DescribeExecution",),
            (executions,),
            "the trigger describes executions of this one state machine by name, to report a data set "
            "version that already ran; execution ARNs end in the run name",
        ),
        Grant(
            lambda role: r.data.grant_read(role, markers),
            GRANT_READ_ACTIONS,
            (r.data.arn_for_objects(markers),),
            "grant_read on the data sets prefix: the scheduled run looks for the newest _READY marker",
        ),
        Allow("ListDataSetVersions", ("s3:ListBucketVersions",), (r.data.bucket_arn,)),
    )


TRIGGER = StepSpec(
    handler=trigger.trigger,
    description="Starts one run per data set version (_READY marker or schedule)",
    variables=(settings.STATE_MACHINE_ARN, settings.DATA_BUCKET),
    permissions=_permissions,
)
