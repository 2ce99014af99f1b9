"""Steps AcquireLock, CheckLock and ReleaseLock (``lambda_handlers/deployment_lock.py``)."""

from __future__ import annotations

from collections.abc import Sequence

from lambda_handlers import deployment_lock, settings
from lambda_handlers.domain import READY_MARKER
from stacks.steps.step_spec import Allow, Permission, StepResources, StepSpec, lock_only


def _acquire(r: StepResources) -> Sequence[Permission]:
    return (
        *lock_only(r),
        Allow(
            "ReadReadyMarkers",
            ("s3:GetObject",),
            (r.data.arn_for_objects(f"{r.config.runs.dataset_prefix}*{READY_MARKER}"),),
            "HeadObject of a data set's marker (its time orders runs); data sets are folders named at run time",
        ),
        Allow("ListData", ("s3:ListBucket",), (r.data.bucket_arn,)),  # a missing marker reads as 404, not 403
    )


_VARIABLES = (settings.ARTIFACTS_BUCKET,)

ACQUIRE_LOCK = StepSpec(
    handler=deployment_lock.acquire_lock,
    description="Takes the environment's deployment lock, or waits for it, or finds the run superseded",
    variables=_VARIABLES,
    permissions=_acquire,
)

CHECK_LOCK = StepSpec(
    handler=deployment_lock.check_lock,
    description="Tries the deployment lock again while another run deploys",
    variables=_VARIABLES,
    permissions=_acquire,
)

RELEASE_LOCK = StepSpec(
    handler=deployment_lock.release_lock,
    description="Frees the deployment lock and records what was deployed",
    variables=_VARIABLES,
    permissions=lock_only,
)
