"""Steps PlanDeployment and FinishDeployment (``lambda_handlers/fleet.py``): the fleet's batches."""

from __future__ import annotations

from collections.abc import Sequence

from lambda_handlers import fleet, settings
from stacks.steps.step_spec import Allow, Permission, StepResources, StepSpec, lock_only


def _plan(r: StepResources) -> Sequence[Permission]:
    return (
        *lock_only(r),
        Allow(
            "ListDevices",
            ("panorama:ListDevices",),
            ("*",),
            "ListDevices has no resource-level permission (Service Authorization Reference)",
        ),
    )


PLAN_DEPLOYMENT = StepSpec(
    handler=fleet.plan_deployment,
    description="Resolves the devices (ids, names, tag groups) and cuts them into batches",
    variables=(settings.ARTIFACTS_BUCKET,),
    permissions=_plan,
)

FINISH_DEPLOYMENT = StepSpec(
    handler=fleet.finish_deployment,
    description="Gathers the batches' device records and counts",
)
