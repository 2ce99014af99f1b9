"""Roll back what a failed deployment broke: each failed device gets its last good deployment again.

Steps:

- :func:`rollback`: per FAILED / TIMED_OUT device of the batch's ``deployment`` (one iteration of
  the deployment Map: a failing device is rolled back alone, its batch's others keep the new
  version), recreate its last
  good deployment (``deployments/<device>/last-good.json``, written by ``deployment.py`` when a
  deployment succeeds), replacing the failed instance → section ``rollback``. A device with no
  earlier good deployment is SKIPPED with that reason, and nothing is removed; a device whose
  earlier instance still runs needs nothing.
- :func:`check_rollback`: the same poll as the deployment's, for the ``rollback`` section; it
  never writes ``last-good``.

Instances are tagged ``panopipe:rollback-of`` with the run name, so a retried step adopts what it
created. The run still fails afterwards: ``notify`` reports the deployment's failure and the
rollback's outcome. Patch versions that a ``last-good`` record pins are never deregistered
(``package_registration.py``), so what a rollback restores is still registered.

Environment: ARTIFACTS_BUCKET, RUNTIME_ROLE_ARN, STEP_SETTINGS. Objects written:
``runs/<run>/rollback/<device>.json`` (what was sent).
"""

from __future__ import annotations

from lambda_handlers import app_instances, deployment_lock, settings
from lambda_handlers.app_instances import ROLLBACK_TAG, Pacer, instances_on, running, tagged
from lambda_handlers.artifacts import last_good_key, read_json, write_json
from lambda_handlers.aws import clients
from lambda_handlers.state import (
    FAILED,
    IN_PROGRESS,
    SKIPPED,
    SUCCEEDED,
    TIMED_OUT,
    DeviceRecord,
    RunState,
    loop_started,
    run_name,
)
from lambda_handlers.step import step

NO_EARLIER_GOOD = "no earlier good deployment to roll back to"


def rollback_key(run: str, device: str) -> str:
    """Key of the manifest and overrides a rollback of ``run`` sent to ``device``."""
    return f"runs/{run}/rollback/{device}.json"


@step
def rollback(state: RunState) -> RunState:
    """Restore each FAILED / TIMED_OUT device's last good deployment, replacing the failed instance."""
    deployment_lock.renew(state)
    run, s3, bucket = run_name(state), clients.s3(), settings.env(settings.ARTIFACTS_BUCKET)
    pace, records = Pacer(after_others=True), list[DeviceRecord]()  # other batches may be creating
    for device in state["deployment"]["devices"]:
        if device["status"] not in (FAILED, TIMED_OUT):
            continue
        label, device_id, failed = device["device"], device["device_id"], device["instance_id"]
        good = read_json(s3, bucket, last_good_key(label))
        if good is None:
            records.append(
                {
                    "device": label,
                    "device_id": device_id,
                    "instance_id": None,
                    "replaced": None,
                    "status": SKIPPED,
                    "status_description": NO_EARLIER_GOOD,
                }
            )
            continue
        key = rollback_key(run, label)
        write_json(s3, bucket, key, {**good, "rollback_of": run})
        instances = instances_on(device_id)
        adopted = tagged(instances, ROLLBACK_TAG, run)
        still_running = None if adopted else running(instances, good["instance_name"], exclude=failed)
        instance_id: str | None
        if adopted:
            instance_id, status, description = str(adopted["ApplicationInstanceId"]), IN_PROGRESS, "rollback requested"
        elif still_running:
            instance_id, status = str(still_running["ApplicationInstanceId"]), SUCCEEDED
            description = f"the earlier instance {instance_id} still runs: nothing to restore"
        else:
            pace()
            created, refusal = app_instances.create_or_refusal(
                good["instance_name"],
                f"rollback of {run} to {good['run']}"[:255],
                device_id,
                good["manifest"],
                good["overrides"],
                failed,
                {ROLLBACK_TAG: run},
            )
            instance_id = created
            status, description = (
                (IN_PROGRESS, f"rollback to run {good['run']} requested") if created else (FAILED, refusal)
            )
        records.append(
            {
                "device": label,
                "device_id": device_id,
                "replaced": failed,
                "instance_id": instance_id,
                "status": status,
                "status_description": description,
            }
        )
    timeout = settings.current().runs.deployment_timeout_seconds
    status = app_instances.overall(records, expired=False)
    return loop_started(state, "rollback", timeout, status=status, devices=records)


@step
def check_rollback(state: RunState) -> RunState:
    """Poll the rollback (the last-good records stay as they are)."""
    deployment_lock.renew(state)
    return app_instances.poll_devices(state, "rollback")
