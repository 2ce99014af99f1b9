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

from botocore.exceptions import ClientError

from lambda_handlers import settings
from lambda_handlers.aws import panorama
from lambda_handlers.aws.client_errors import error_code, retried
from lambda_handlers.domain import bounded
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
from lambda_handlers.step import logger

#: Tags that make a retried step adopt the instance it created instead of creating a second one.
RUN_TAG = "panopipe:run"
ROLLBACK_TAG = "panopipe:rollback-of"
#: Every instance the pipeline creates carries its environment's prefix: found even if its name changed.
APP_TAG = "panopipe:application"

#: Per-device descriptions kept in the run's state (hundreds of devices share its 256 KB).
DESCRIPTION_MAX = 200

#: Panorama accepts one CreateApplicationInstance request per second.
CREATE_INTERVAL_SECONDS = 1.0
#: How the deploy and rollback steps wait between two creates, and the clock they pace by (tests replace both).
pause: Callable[[float], None] = time.sleep
clock: Callable[[], float] = time.monotonic

_WAITING = frozenset({"DEPLOYMENT_PENDING", "DEPLOYMENT_REQUESTED", "DEPLOYMENT_IN_PROGRESS"})
RUNNING = "DEPLOYMENT_SUCCEEDED"
#: An instance in these statuses occupies the device (or is about to).
_ACTIVE = _WAITING | {RUNNING}
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


def _provisioned(summary: dict[str, Any]) -> bool:
    """A device that can run an application (not awaiting provisioning, failed or deleted)."""
    return str(summary.get("ProvisioningStatus", "SUCCEEDED")) == "SUCCEEDED"


def _matches(summary: dict[str, Any], tags: dict[str, str]) -> bool:
    found = summary.get("Tags") or {}
    return all(found.get(key) == value for key, value in tags.items())


def resolve_devices(devices: tuple[Device, ...]) -> dict[str, str]:
    """Device label → device id, in config order; names and tag groups are looked up with ListDevices.

    A name must match exactly one appliance; a tag group matches every provisioned appliance
    carrying all its tags (labelled by its id, which never changes). A device reached twice is
    deployed once. Raises InvalidInput for a name no device has or that several share, and for a
    tag group that matches nothing.
    """
    if all(d.id for d in devices):
        return {d.label: str(d.id) for d in devices}
    listed = list(_pages("list_devices", "Devices"))
    by_name: dict[str, list[str]] = {}
    for summary in listed:
        by_name.setdefault(str(summary.get("Name")), []).append(str(summary["DeviceId"]))
    resolved: dict[str, str] = {}
    problems = []
    for device in devices:
        if device.id:
            found = {device.label: device.id}
        elif device.name:
            matches = by_name.get(device.name, [])
            if len(matches) != 1:
                problems.append(
                    f"no appliance named {device.name!r} (ListDevices finds: {', '.join(sorted(by_name)) or 'none'})"
                    if not matches
                    else f"{len(matches)} appliances are named {device.name!r} ({', '.join(matches)}): configure the id"
                )
                continue
            found = {device.name: matches[0]}
        else:
            tagged_devices = sorted(
                (s for s in listed if _matches(s, device.tags or {})), key=lambda s: (str(s.get("Name")), s["DeviceId"])
            )
            if not tagged_devices:
                problems.append(f"no appliance carries the tags of {device.label} (ListDevices: {len(listed)} devices)")
                continue
            found = {
                str(s["Name"]) if len(by_name.get(str(s.get("Name")), [])) == 1 else str(s["DeviceId"]): str(
                    s["DeviceId"]
                )
                for s in tagged_devices
            }
        taken = set(resolved.values())
        resolved.update({label: i for label, i in found.items() if i not in taken})
    if problems:
        raise InvalidInput("devices in the config: " + "; ".join(problems))
    return resolved


def instances_on(device_id: str) -> list[dict[str, Any]]:
    """Every application instance on a device (ListApplicationInstances)."""
    return list(_pages("list_application_instances", "ApplicationInstances", DeviceId=device_id))


def tagged(instances: list[dict[str, Any]], tag: str, run: str) -> dict[str, Any] | None:
    """The instance a run created (tagged ``tag`` = run), if any."""
    return next((i for i in instances if (i.get("Tags") or {}).get(tag) == run), None)


def _ours(instance: dict[str, Any], name: str) -> bool:
    """An instance of this environment's application: by name, or by the tag every create adds."""
    return instance.get("Name") == name or (instance.get("Tags") or {}).get(APP_TAG) == settings.current().prefix


def running(instances: list[dict[str, Any]], name: str, exclude: str | None = None) -> dict[str, Any] | None:
    """The instance of the application that a new one replaces: the newest deployed, else the newest deploying.

    Whatever instance of the application is on the device (named ``name``, or tagged
    :data:`APP_TAG` under a name from another label) is replaced, so a device never ends with two;
    one that another deployment is replacing already makes the service refuse (ConflictException).
    """
    active = [
        i
        for i in instances
        if _ours(i, name) and i.get("Status") in _ACTIVE and i.get("ApplicationInstanceId") != exclude
    ]
    active.sort(key=lambda i: (i.get("Status") == RUNNING, str(i.get("CreatedTime", ""))))
    return active[-1] if active else None


def others(instances: list[dict[str, Any]], name: str, keep: set[str]) -> list[str]:
    """Ids of further instances of the application still deployed or deploying (left by an earlier fault)."""
    return [
        str(i["ApplicationInstanceId"])
        for i in instances
        if _ours(i, name) and i.get("Status") in _ACTIVE and i.get("ApplicationInstanceId") not in keep
    ]


def remove(instance_ids: list[str]) -> None:
    """RemoveApplicationInstance for each id (an instance removed meanwhile is no error)."""
    client = panorama.client()
    for instance_id in instance_ids:
        try:
            client.remove_application_instance(ApplicationInstanceId=instance_id)
        except client.exceptions.ResourceNotFoundException:
            continue


def create_or_refusal(
    name: str,
    description: str,
    device_id: str,
    manifest: str,
    overrides: str,
    replaced: str | None,
    tags: dict[str, str],
) -> tuple[str | None, str]:
    """CreateApplicationInstance (replacing ``replaced`` if given): ``(the new instance's id, "")``.

    A refusal of this device is ``(None, reason)`` instead of an error: anything but throttling and
    server faults (ConflictException, ValidationException, ...) concerns this device alone, and the
    others of its batch go on. Throttling and server faults raise: the state machine retries the
    batch, which adopts what it created already (by its tags).
    """
    try:
        response = panorama.client().create_application_instance(
            Name=name,
            Description=description,
            DefaultRuntimeContextDevice=device_id,
            ManifestPayload={"PayloadData": manifest},
            ManifestOverridesPayload={"PayloadData": overrides},
            RuntimeRoleArn=settings.env(settings.RUNTIME_ROLE_ARN),
            **({"ApplicationInstanceIdToReplace": replaced} if replaced else {}),
            Tags={**tags, APP_TAG: settings.current().prefix},
        )
        return str(response["ApplicationInstanceId"]), ""
    except ClientError as error:
        if retried(error):
            raise
        message = error.response.get("Error", {}).get("Message", "")
        reason = bounded(f"CreateApplicationInstance refused: {error_code(error)}: {message}", DESCRIPTION_MAX)
        logger.warning("device refused", extra={"device_id": device_id, "reason": reason})
        return None, reason


class Pacer:
    """Spaces creates by :data:`CREATE_INTERVAL_SECONDS` from the previous one's start, by a clock.

    The calls between two creates count towards the second; the first goes at once unless
    ``after_others``: a batch after the first waits before its first create too, as another
    batch's last create may have been less than a second ago.
    """

    def __init__(self, after_others: bool = False) -> None:
        self.last: float | None = clock() if after_others else None

    def __call__(self) -> None:
        """Wait until a second has passed since the previous create began."""
        if self.last is not None:
            left = CREATE_INTERVAL_SECONDS - (clock() - self.last)
            if left > 0:
                pause(left)
        self.last = clock()


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
            device = {**device, "status": status, "status_description": bounded(description, DESCRIPTION_MAX)}
        devices.append(device)
    return polled(state, section, overall(devices, expired), devices=devices)
