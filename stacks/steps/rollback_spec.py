"""Steps Rollback and CheckRollback (``lambda_handlers/rollback.py``): restore failed devices' last good deployment."""

from __future__ import annotations

from collections.abc import Sequence

from lambda_handlers import rollback, settings
from stacks.steps.step_spec import (
    PER_DEVICE,
    Allow,
    Permission,
    StepResources,
    StepSpec,
    create_instances,
    describe_instances,
    lock_only,
    pass_role,
    write_run_manifests,
)


def _rollback(r: StepResources) -> Sequence[Permission]:
    return (
        *lock_only(r),
        pass_role(r.runtime_role, "panorama.amazonaws.com"),
        *create_instances(r),
        write_run_manifests(r),
        Allow("ReadLastGood", ("s3:GetObject",), (r.artifacts.arn_for_objects("deployments/*"),), PER_DEVICE),
    )


ROLLBACK = StepSpec(
    handler=rollback.rollback,
    description="Redeploys the last good manifest on the devices that failed",
    variables=(settings.ARTIFACTS_BUCKET, settings.RUNTIME_ROLE_ARN),
    permissions=_rollback,
    timeout_seconds=120,
)

CHECK_ROLLBACK = StepSpec(
    handler=rollback.check_rollback,
    description="Polls",
    variables=(settings.ARTIFACTS_BUCKET,),
    permissions=lambda r: (describe_instances(r), *lock_only(r)),
)
