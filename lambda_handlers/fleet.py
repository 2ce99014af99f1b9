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

The run's state carries every device's record (at most 256 KB between steps): a fleet is refused
beyond :data:`MAX_DEVICES` before anything is deployed, with the way out.
"""

from __future__ import annotations

import datetime
import time
from typing import cast

from lambda_handlers import app_instances, deployment_lock, settings
from lambda_handlers.app_instances import CREATE_INTERVAL_SECONDS, resolve_devices
from lambda_handlers.deployment import check_deployment
from lambda_handlers.errors import InvalidInput
from lambda_handlers.state import (
    FAILED,
    SKIPPED,
    SUCCEEDED,
    TIMED_OUT,
    Batch,
    DeviceRecord,
    DevicesSection,
    RunState,
)
from lambda_handlers.step import state_name, step

#: Devices one run deploys to at most (the state between steps holds each one's record).
MAX_DEVICES = 400
#: Slack on the stagger of batches: each create also lists instances and writes the manifest.
STAGGER = 1.25


def _iso(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@step
def plan_deployment(state: RunState) -> RunState:
    """Resolve the devices and cut them into batches (``fleet``)."""
    deployment_lock.renew(state)
    config = settings.current()
    devices = resolve_devices(config.devices)
    if len(devices) > MAX_DEVICES:
        raise InvalidInput(
            f"devices in the config resolve to {len(devices)} appliances; one environment deploys to at most "
            f"{MAX_DEVICES} (the run's state holds each one's status): split the fleet into environments"
        )
    size, now = config.runs.deploy_batch_size, time.time()
    labels = list(devices)
    batches: list[Batch] = [
        {
            "index": index,
            "start_at": _iso(now + index * size * CREATE_INTERVAL_SECONDS * STAGGER),
            "devices": [{"device": label, "device_id": devices[label]} for label in labels[start : start + size]],
        }
        for index, start in enumerate(range(0, len(labels), size))
    ]
    return {**state, "fleet": {"devices": len(labels), "batch_size": size, "batches": batches}}


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


@step
def finish_deployment(state: RunState) -> RunState:
    """The batches' records as the run's ``deployment`` (and ``rollback``) sections, with counts.

    A deployment that failed anywhere makes CheckDeployment the run's ``failed_step``.
    """
    fleet = state["fleet"]
    results = fleet.get("results", [])
    deployment = [record for result in results for record in result.get("deployment", [])]
    rollback = [record for result in results for record in result.get("rollback", [])]
    planned = {key: value for key, value in fleet.items() if key != "results"}
    finished = cast(RunState, {**state, "fleet": {**planned, "counts": counts(deployment, rollback)}})
    finished["deployment"] = _section(deployment)
    if rollback:
        finished["rollback"] = _section(rollback)
    if finished["deployment"]["status"] in (FAILED, TIMED_OUT):
        finished["failed_step"] = state_name(check_deployment)
    return finished
