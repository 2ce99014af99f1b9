"""Panorama application instances as the deploy and rollback steps see them (the shared part).

Reading the account (devices by name, instances on a device, the one a run tagged), creating an
instance at the API's pace (one create request per second), and one poll of a section's devices:
a device's instance is SUCCEEDED once deployed AND its application reports HealthStatus RUNNING,
FAILED when the deployment fails or the application reports ERROR (deployed, but crashing),
TIMED_OUT past the section's deadline. A failed or timed-out deployment is a status, not an
exception: the state machine routes it to the rollback.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any, Literal

from lambda_handlers import settings
from lambda_handlers.aws import panorama
from lambda_handlers.errors import InvalidInput
from lambda_handlers.settings import Device
from lambda_handlers.state import (
    FAILED,
    IN_PROGRESS,
    SKIPPED,
    SUCCEEDED,
    TIMED_OUT,
    DeviceRecord,
    RunState,
    past,
    polled,
)

#: Tags that make a retried step adopt the instance it created instead of creating a second one.
RUN_TAG = "panopipe:run"
ROLLBACK_TAG = "panopipe:rollback-of"

#: Panorama accepts one CreateApplicationInstance request per second.
CREATE_INTERVAL_SECONDS = 1.0
#: How the deploy and rollback steps wait between two creates (tests replace it).
pause: Callable[[float], None] = time.sleep

_WAITING = frozenset({"DEPLOYMENT_PENDING", "DEPLOYMENT_REQUESTED", "DEPLOYMENT_IN_PROGRESS"})
RUNNING = "DEPLOYMENT_SUCCEEDED"
#: A deployed instance is good only once its application runs (NOT_AVAILABLE: not started yet).
HEALTHY = "RUNNING"


def _pages(operation: str, key: str, **params: Any) -> Iterator[dict[str, Any]]:
    """Items of a Panorama list operation, following NextToken (the model has no paginators)."""
    method = getattr(panorama.client(), operation)
    token = None
    while True:
        page = method(**params, **({"NextToken": token} if token else {}))
        yield from page.get(key, [])
        token = page.get("NextToken")
        if not token:
            return


def resolve_devices(devices: tuple[Device, ...]) -> dict[str, str]:
    """Device label → device id; names are looked up with ListDevices (exact match).

    Raises InvalidInput for a name no device has, or that several devices share.
    """
    ids = {d.label: d.id for d in devices if d.id}
    names = [d.name for d in devices if not d.id and d.name]
    if not names:
        return {label: str(i) for label, i in ids.items()}
    found: dict[str, list[str]] = {}
    for device in _pages("list_devices", "Devices"):
        found.setdefault(str(device.get("Name")), []).append(str(device["DeviceId"]))
    problems = []
    for name in names:
        matches = found.get(name, [])
        if len(matches) == 1:
            ids[name] = matches[0]
        elif not matches:
            problems.append(f"no appliance named {name!r} (ListDevices finds: {', '.join(sorted(found)) or 'none'})")
        else:
            problems.append(f"{len(matches)} appliances are named {name!r} ({', '.join(matches)}): configure the id")
    if problems:
        raise InvalidInput("devices in the config: " + "; ".join(problems))
    return {label: str(i) for label, i in ids.items()}


def instances_on(device_id: str) -> list[dict[str, Any]]:
    """Every application instance on a device (ListApplicationInstances)."""
    return list(_pages("list_application_instances", "ApplicationInstances", DeviceId=device_id))


def tagged(instances: list[dict[str, Any]], tag: str, run: str) -> dict[str, Any] | None:
    """The instance a run created (tagged ``tag`` = run), if any."""
    return next((i for i in instances if (i.get("Tags") or {}).get(tag) == run), None)


def running(instances: list[dict[str, Any]], name: str, exclude: str | None = None) -> dict[str, Any] | None:
    """The newest instance named ``name`` in DEPLOYMENT_SUCCEEDED (the one a new instance replaces)."""
    candidates = [
        i
        for i in instances
        if i.get("Name") == name and i.get("Status") == RUNNING and i.get("ApplicationInstanceId") != exclude
    ]
    candidates.sort(key=lambda i: str(i.get("CreatedTime", "")))
    return candidates[-1] if candidates else None


def create(
    name: str,
    description: str,
    device_id: str,
    manifest: str,
    overrides: str,
    replaced: str | None,
    tags: dict[str, str],
) -> str:
    """CreateApplicationInstance (replacing ``replaced`` if given); returns the new instance's id."""
    response = panorama.client().create_application_instance(
        Name=name,
        Description=description,
        DefaultRuntimeContextDevice=device_id,
        ManifestPayload={"PayloadData": manifest},
        ManifestOverridesPayload={"PayloadData": overrides},
        RuntimeRoleArn=settings.env(settings.RUNTIME_ROLE_ARN),
        **({"ApplicationInstanceIdToReplace": replaced} if replaced else {}),
        Tags=tags,
    )
    return str(response["ApplicationInstanceId"])


class Pacer:
    """Spaces creates by :data:`CREATE_INTERVAL_SECONDS` (the first one goes at once)."""

    def __init__(self) -> None:
        self.created = 0

    def __call__(self) -> None:
        """Wait before every create but the first."""
        if self.created:
            pause(CREATE_INTERVAL_SECONDS)
        self.created += 1


def describe(instance_id: str) -> tuple[str, str]:
    """(device status, description) of an application instance."""
    client = panorama.client()
    try:
        described = client.describe_application_instance(ApplicationInstanceId=instance_id)
    except client.exceptions.ResourceNotFoundException:
        return FAILED, f"application instance {instance_id} no longer exists"
    status = str(described.get("Status", "?"))
    description = f"{status}: {described['StatusDescription']}" if described.get("StatusDescription") else status
    reported = ", ".join(
        f"{c['RuntimeContextName']} {c['DeviceReportedStatus']}" for c in described.get("RuntimeContextStates", [])
    )
    if status == RUNNING:
        health = str(described.get("HealthStatus") or "NOT_AVAILABLE")
        if health == HEALTHY:
            return SUCCEEDED, description
        if health == "ERROR":
            detail = f"{description}; HealthStatus ERROR: the application is not running"
            return FAILED, f"{detail} (device reported: {reported})" if reported else detail
        return IN_PROGRESS, f"{description}; waiting for HealthStatus {HEALTHY} (now {health})"
    if status in _WAITING:
        return IN_PROGRESS, description
    return FAILED, f"{description} (device reported: {reported})" if reported else description


def overall(devices: list[DeviceRecord], expired: bool) -> str:
    """The section's status from its devices' (TIMED_OUT > IN_PROGRESS > SKIPPED-only > FAILED > SUCCEEDED)."""
    statuses = {d["status"] for d in devices}
    if TIMED_OUT in statuses:
        return TIMED_OUT
    if IN_PROGRESS in statuses:
        return TIMED_OUT if expired else IN_PROGRESS
    if statuses == {SKIPPED}:
        return SKIPPED  # nothing was restored: not a successful rollback
    return FAILED if FAILED in statuses else SUCCEEDED


def poll_devices(
    state: RunState,
    section: Literal["deployment", "rollback"],
    on_success: Callable[[DeviceRecord], None] = lambda device: None,
) -> RunState:
    """One poll of every device of ``section`` still in progress; past the deadline they time out."""
    data = state[section]
    expired = past(data["deadline"])
    devices: list[DeviceRecord] = []
    for device in data["devices"]:
        if device["status"] == IN_PROGRESS and device["instance_id"]:
            status, description = describe(device["instance_id"])
            if status == SUCCEEDED:
                on_success(device)
            elif status == IN_PROGRESS and expired:
                timeout = settings.current().runs.deployment_timeout_seconds
                status, description = TIMED_OUT, f"still {description} after {timeout} s"
            device = {**device, "status": status, "status_description": description}
        devices.append(device)
    return polled(state, section, overall(devices, expired), devices=devices)
