"""Fleets: the deployment as a Map over batches of devices, so no Lambda call grows with the fleet.

- :func:`plan_deployment`: resolves the config's devices (ids; names and tag groups through
  ListDevices, at run time) and cuts them into batches of ``runs.deploy_batch_size`` → section
  ``fleet``. Batch *i* may start its creates at ``start_at`` = now + *i* × size × 1 s × 1.25: with
  every batch deploying in parallel, creates still keep to Panorama's one per second (the 25 %
  covers each create's own calls; a create throttled anyway is retried and adopted, see
  ``deployment.py``).
- The state machine's Map runs one iteration per batch: Deploy → its wait loop → (devices that
  failed) Rollback → its wait loop. A failing device is rolled back alone.
- :func:`finish_deployment`: the batches' device records become the run's ``deployment`` and
  ``rollback`` sections again (one status each, as before fleets), with ``fleet.counts``.

The run's state carries every device's record (at most 256 KB between steps): a fleet whose records
could outgrow it (:func:`worst_case_bytes`: about 230 devices with 30-character ids) is refused
before anything is deployed, with the way out.
"""

from __future__ import annotations

import json
import time
from typing import cast

from lambda_handlers import app_instances, deployment_lock, settings
from lambda_handlers.app_instances import CREATE_INTERVAL_SECONDS, DESCRIPTION_MAX, resolve_devices
from lambda_handlers.deployment import check_deployment
from lambda_handlers.domain import bounded, iso_utc
from lambda_handlers.errors import InvalidInput
from lambda_handlers.notify import error_reason
from lambda_handlers.state import (
    FAILED,
    SKIPPED,
    SUCCEEDED,
    TIMED_OUT,
    Batch,
    BatchResult,
    CaughtError,
    DeviceRecord,
    DevicesSection,
    RunState,
)
from lambda_handlers.step import state_name, step

#: Step Functions' limit on the state passed between steps, and what the rest of a run's state may take.
STATE_LIMIT_BYTES = 256 * 1024
REST_OF_STATE_BYTES = 24 * 1024
#: The longest application instance id (``applicationInstance-`` and 26 characters), with room to spare.
INSTANCE_ID_CHARS = 64
#: Slack on the stagger of batches: each create also lists instances and writes the manifest.
STAGGER = 1.25


@step
def plan_deployment(state: RunState) -> RunState:
    """Resolve the devices and cut them into batches (``fleet``)."""
    deployment_lock.renew(state)
    config = settings.current()
    devices = resolve_devices(config.devices)
    worst = worst_case_bytes(devices)
    if worst > STATE_LIMIT_BYTES - REST_OF_STATE_BYTES:
        raise InvalidInput(
            f"devices in the config resolve to {len(devices)} appliances: their records could take "
            f"{worst // 1024} KiB of the run's state (every device failed and rolled back), more than the "
            f"{(STATE_LIMIT_BYTES - REST_OF_STATE_BYTES) // 1024} KiB it has (Step Functions passes at most "
            f"256 KiB between steps): split the fleet into environments"
        )
    size, now = config.runs.deploy_batch_size, time.time()
    labels = list(devices)
    batches: list[Batch] = [
        {
            "index": index,
            "start_at": iso_utc(now + index * size * CREATE_INTERVAL_SECONDS * STAGGER),
            "devices": [{"device": label, "device_id": devices[label]} for label in labels[start : start + size]],
        }
        for index, start in enumerate(range(0, len(labels), size))
    ]
    return {**state, "fleet": {"devices": len(labels), "batch_size": size, "batches": batches}}


def worst_case_bytes(devices: dict[str, str]) -> int:
    """What the devices' records may take in the state at most.

    Each device: a deployment and a rollback record with the longest description, and its place in
    the plan's batches (both are in the state when the Map ends).
    """
    total = 0
    for label, device_id in devices.items():
        record: DeviceRecord = {
            "device": label,
            "device_id": device_id,
            "instance_id": "i" * INSTANCE_ID_CHARS,
            "replaced": "i" * INSTANCE_ID_CHARS,
            "status": TIMED_OUT,
            "status_description": "d" * DESCRIPTION_MAX,
        }
        total += 2 * len(json.dumps(record)) + len(json.dumps({"device": label, "device_id": device_id}))
    return total


def _section(records: list[DeviceRecord]) -> DevicesSection:
    return {"status": app_instances.overall(records, expired=False), "devices": records}


def counts(deployment: list[DeviceRecord], rollback: list[DeviceRecord]) -> dict[str, int]:
    """Devices per outcome: succeeded, failed, timed out; rolled back, not rolled back (skipped)."""
    deployed = [d["status"] for d in deployment]
    restored = [d["status"] for d in rollback]
    return {
        "devices": len(deployed),
        "succeeded": deployed.count(SUCCEEDED),
        "failed": deployed.count(FAILED),
        "timed_out": deployed.count(TIMED_OUT),
        "rolled_back": restored.count(SUCCEEDED),
        "rollback_failed": restored.count(FAILED) + restored.count(TIMED_OUT),
        "rollback_skipped": restored.count(SKIPPED),
    }


def _failed_batch(result: BatchResult) -> list[DeviceRecord]:
    """The records of a batch a step failed for good: its devices not yet done are FAILED with the error."""
    error: CaughtError = result.get("error") or {"Error": "Error", "Cause": ""}
    reason = f"the batch's step failed: {error.get('Error', 'Error')}: {error_reason(error)}"
    records: list[DeviceRecord] = [
        {
            "device": d["device"],
            "device_id": d["device_id"],
            "instance_id": None,
            "replaced": None,
            "status": FAILED,
            "status_description": bounded(reason, DESCRIPTION_MAX),
        }
        for d in result.get("undeployed", [])
    ]
    for record in result.get("deployment", []):
        done = record["status"] in (SUCCEEDED, FAILED, TIMED_OUT)
        records.append(
            record if done else {**record, "status": FAILED, "status_description": bounded(reason, DESCRIPTION_MAX)}
        )
    return records


@step
def finish_deployment(state: RunState) -> RunState:
    """The batches' records as the run's ``deployment`` (and ``rollback``) sections, with counts.

    A deployment that failed anywhere makes CheckDeployment the run's ``failed_step``. The plan's
    batches are dropped (the state carries every device's records once, at most 256 KB).
    """
    fleet = state["fleet"]
    results = fleet.get("results", [])
    deployment = [
        record
        for result in results
        for record in (_failed_batch(result) if "error" in result else result.get("deployment", []))
    ]
    rollback = [record for result in results for record in result.get("rollback", [])]
    planned = {key: value for key, value in fleet.items() if key not in ("results", "batches")}
    finished = cast(RunState, {**state, "fleet": {**planned, "counts": counts(deployment, rollback)}})
    finished["deployment"] = _section(deployment)
    if rollback:
        finished["rollback"] = _section(rollback)
    if finished["deployment"]["status"] in (FAILED, TIMED_OUT):
        finished["failed_step"] = state_name(check_deployment)
    return finished
