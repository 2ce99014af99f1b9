"""Deploy the registered model to every configured appliance, wait for it, roll back what failed.

Step handlers (DESIGN.md §3, "API sequence"):

- :data:`deploy_handler`: per device, build graph.json (device id, Region, the new model patch
  version pinned) and take the stored camera overrides → CreateApplicationInstance replacing the
  instance that runs now → section ``deployment`` (IN_PROGRESS).
- :data:`check_handler`: one DescribeApplicationInstance per device still in progress; a device
  that succeeds becomes its ``last-good`` deployment. A failed or timed-out deployment is a status
  (FAILED / TIMED_OUT), not an exception: the state machine routes it to the rollback.
- :data:`rollback_handler`: per FAILED / TIMED_OUT device, recreate its last good deployment
  (replacing the failed instance) → section ``rollback``; a device with no earlier good deployment
  is SKIPPED with that reason, and nothing is removed.
- :data:`check_rollback_handler`: the same poll for the ``rollback`` section (never writes
  ``last-good``).

Each device record: ``{"device" (label: id or name from the config), "device_id", "instance_id",
"replaced", "status" (IN_PROGRESS | SUCCEEDED | FAILED | TIMED_OUT | SKIPPED), "status_description",
"manifest_key"}``.

Idempotent: instances are tagged ``panopipe:run`` (``panopipe:rollback-of`` for a rollback) with the
run name; a retried step adopts the tagged instance instead of creating a second one. Creates are
spaced by :data:`CREATE_INTERVAL_SECONDS` (quota: one create request per second).

A device given by name is resolved with ListDevices (exact name); an unknown or ambiguous name
raises InvalidInput before anything is created, as does a manifest over the 51,200-character
payload limit.

Environment: ARTIFACTS_BUCKET, MANIFEST_TEMPLATE_KEY, RUNTIME_ROLE_ARN, STEP_SETTINGS, AWS_REGION.
Objects in the artifacts bucket: ``runs/<run>/deployment/<device>.json`` and
``runs/<run>/rollback/<device>.json`` (what was sent), ``deployments/<device>/last-good.json``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from typing import Any

from lambda_handlers import settings as cfg
from lambda_handlers.artifacts import last_good_key, load_template, read_json, write_json
from lambda_handlers.aws import clients, panorama
from lambda_handlers.errors import InvalidInput
from lambda_handlers.package_registration import Registration
from lambda_handlers.settings import Device
from lambda_handlers.state import (
    FAILED,
    IN_PROGRESS,
    SKIPPED,
    SUCCEEDED,
    TIMED_OUT,
    State,
    loop_started,
    past,
    polled,
)
from lambda_handlers.step import logger, step
from panorama_app.manifest import documents, validation
from panorama_app.manifest.rules import ManifestError

RUN_TAG = "panopipe:run"
ROLLBACK_TAG = "panopipe:rollback-of"
NO_EARLIER_GOOD = "no earlier good deployment to roll back to"

#: Panorama accepts one CreateApplicationInstance request per second.
CREATE_INTERVAL_SECONDS = 1.0
#: How the deploy and rollback steps wait between two creates (tests replace it).
pause: Callable[[float], None] = time.sleep

_REGISTRATION_FIELDS = frozenset(f.name for f in fields(Registration))
_WAITING = frozenset({"DEPLOYMENT_PENDING", "DEPLOYMENT_REQUESTED", "DEPLOYMENT_IN_PROGRESS"})
_RUNNING = "DEPLOYMENT_SUCCEEDED"


def deployment_key(run: str, device: str) -> str:
    """Key of the manifest and overrides sent to ``device`` by ``run``."""
    return f"runs/{run}/deployment/{device}.json"


def rollback_key(run: str, device: str) -> str:
    """Key of the manifest and overrides a rollback of ``run`` sent to ``device``."""
    return f"runs/{run}/rollback/{device}.json"


# --- Panorama reads -------------------------------------------------------------------------------


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


def _instances(device_id: str) -> list[dict[str, Any]]:
    return list(_pages("list_application_instances", "ApplicationInstances", DeviceId=device_id))


def _tagged(instances: list[dict[str, Any]], tag: str, run: str) -> dict[str, Any] | None:
    return next((i for i in instances if (i.get("Tags") or {}).get(tag) == run), None)


def _running(instances: list[dict[str, Any]], name: str, exclude: str | None = None) -> dict[str, Any] | None:
    """The newest instance named ``name`` in DEPLOYMENT_SUCCEEDED (the one a new instance replaces)."""
    candidates = [
        i
        for i in instances
        if i.get("Name") == name and i.get("Status") == _RUNNING and i.get("ApplicationInstanceId") != exclude
    ]
    candidates.sort(key=lambda i: str(i.get("CreatedTime", "")))
    return candidates[-1] if candidates else None


# --- deploy ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Plan:
    device: str
    device_id: str
    name: str
    description: str
    manifest: str
    overrides: str


def _payload(document: dict[str, Any], what: str, device: str) -> str:
    """``PayloadData`` text, refused here if the service would refuse it for its size."""
    text = validation.payload(document)
    if len(text) > validation.MAX_PAYLOAD_CHARS:
        raise InvalidInput(
            f"{what} for device {device} is {len(text)} characters; CreateApplicationInstance accepts at most "
            f"{validation.MAX_PAYLOAD_CHARS}: shorten parameter values or use fewer cameras"
        )
    return text


def _plans(state: State, device_ids: dict[str, str]) -> list[_Plan]:
    """Every device's manifest and overrides, built and checked before anything is created."""
    template = load_template(clients.s3(), cfg.env(cfg.ARTIFACTS_BUCKET), cfg.env(cfg.MANIFEST_TEMPLATE_KEY))
    spec, package = template.spec, state["package"]
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or ""
    run = state["run"]["name"]
    plans = []
    for label, device_id in device_ids.items():
        try:
            graph = documents.graph(
                spec,
                template.account_id,
                values={"device_id": device_id, **({"region": region} if region else {})},
                patch_versions={spec.model_package: package["patch_version"]},
            )
            validation.validate_overrides(template.overrides, graph)
        except ManifestError as error:
            raise InvalidInput(f"manifest for device {label}: {error}") from error
        plans.append(
            _Plan(
                device=label,
                device_id=device_id,
                name=spec.instance_name(label),
                description=f"{run}: {package['package_name']} {package['package_version']} "
                f"patch {package['patch_version'][:12]}"[:255],
                manifest=_payload(graph, "graph.json", label),
                overrides=_payload(template.overrides, "camera overrides", label),
            )
        )
    return plans


def _create(
    name: str,
    description: str,
    device_id: str,
    manifest: str,
    overrides: str,
    replaced: str | None,
    tags: dict[str, str],
) -> str:
    response = panorama.client().create_application_instance(
        Name=name,
        Description=description,
        DefaultRuntimeContextDevice=device_id,
        ManifestPayload={"PayloadData": manifest},
        ManifestOverridesPayload={"PayloadData": overrides},
        RuntimeRoleArn=cfg.env(cfg.RUNTIME_ROLE_ARN),
        **({"ApplicationInstanceIdToReplace": replaced} if replaced else {}),
        Tags=tags,
    )
    return str(response["ApplicationInstanceId"])


class _Pacer:
    """Spaces creates by :data:`CREATE_INTERVAL_SECONDS` (the first one goes at once)."""

    def __init__(self) -> None:
        self.created = 0

    def __call__(self) -> None:
        if self.created:
            pause(CREATE_INTERVAL_SECONDS)
        self.created += 1


def deploy(state: State) -> State:
    """Create one application instance per configured device, replacing the running one."""
    settings = cfg.settings()
    run, s3, bucket = state["run"]["name"], clients.s3(), cfg.env(cfg.ARTIFACTS_BUCKET)
    plans = _plans(state, resolve_devices(settings.devices))
    pace, records = _Pacer(), []
    for plan in plans:
        key = deployment_key(run, plan.device)
        write_json(
            s3,
            bucket,
            key,
            {
                "run": run,
                "device": plan.device,
                "device_id": plan.device_id,
                "instance_name": plan.name,
                "manifest": plan.manifest,
                "overrides": plan.overrides,
                "package": {k: v for k, v in state["package"].items() if k in _REGISTRATION_FIELDS},
            },
        )
        instances = _instances(plan.device_id)
        adopted = _tagged(instances, RUN_TAG, run)
        if adopted:
            instance_id = str(adopted["ApplicationInstanceId"])
            described = panorama.client().describe_application_instance(ApplicationInstanceId=instance_id)
            replaced = described.get("ApplicationInstanceIdToReplace")
            logger.info("instance of this run adopted", extra={"device": plan.device, "instance_id": instance_id})
        else:
            running = _running(instances, plan.name)
            replaced = running["ApplicationInstanceId"] if running else None
            pace()
            instance_id = _create(
                plan.name, plan.description, plan.device_id, plan.manifest, plan.overrides, replaced, {RUN_TAG: run}
            )
        records.append(
            {
                "device": plan.device,
                "device_id": plan.device_id,
                "instance_id": instance_id,
                "replaced": replaced,
                "status": IN_PROGRESS,
                "status_description": "deployment requested",
                "manifest_key": key,
            }
        )
    timeout = settings.timing.deployment_timeout_seconds
    return loop_started(state, "deployment", timeout, status=_overall(records, expired=False), devices=records)


# --- check (deployment and rollback) ------------------------------------------------------------


def _describe(instance_id: str) -> tuple[str, str]:
    """(device status, description) of an application instance."""
    client = panorama.client()
    try:
        described = client.describe_application_instance(ApplicationInstanceId=instance_id)
    except client.exceptions.ResourceNotFoundException:
        return FAILED, f"application instance {instance_id} no longer exists"
    status = str(described.get("Status", "?"))
    description = f"{status}: {described['StatusDescription']}" if described.get("StatusDescription") else status
    if status == _RUNNING:
        return SUCCEEDED, description
    if status in _WAITING:
        return IN_PROGRESS, description
    reported = ", ".join(
        f"{c['RuntimeContextName']} {c['DeviceReportedStatus']}" for c in described.get("RuntimeContextStates", [])
    )
    return FAILED, f"{description} (device reported: {reported})" if reported else description


def _overall(devices: list[dict[str, Any]], expired: bool) -> str:
    statuses = {d["status"] for d in devices}
    if TIMED_OUT in statuses:
        return TIMED_OUT
    if IN_PROGRESS in statuses:
        return TIMED_OUT if expired else IN_PROGRESS
    if statuses == {SKIPPED}:
        return SKIPPED  # nothing was restored: not a successful rollback
    return FAILED if FAILED in statuses else SUCCEEDED


def _check(state: State, section: str, remember_good: bool) -> State:
    """One poll of every device of ``section`` still in progress; past the deadline they time out."""
    data = state[section]
    expired = past(int(data["deadline"]))
    s3, bucket = clients.s3(), cfg.env(cfg.ARTIFACTS_BUCKET)
    devices = []
    for device in data["devices"]:
        if device["status"] == IN_PROGRESS:
            status, description = _describe(device["instance_id"])
            if status == SUCCEEDED and remember_good:
                _remember(s3, bucket, device)
            elif status == IN_PROGRESS and expired:
                timeout = cfg.settings().timing.deployment_timeout_seconds
                status, description = TIMED_OUT, f"still {description} after {timeout} s"
            device = {**device, "status": status, "status_description": description}
        devices.append(device)
    return polled(state, section, _overall(devices, expired), devices=devices)


def _remember(s3: Any, bucket: str, device: dict[str, Any]) -> None:
    """Make this deployment the device's last good one (what a later rollback restores)."""
    sent = read_json(s3, bucket, device["manifest_key"])
    good = {
        "instance_id": device["instance_id"],
        "device_id": device["device_id"],
        "instance_name": sent["instance_name"],
        "manifest": sent["manifest"],
        "overrides": sent["overrides"],
        "run": sent["run"],
        "package": sent["package"],
    }
    write_json(s3, bucket, last_good_key(device["device"]), good)


def check(state: State) -> State:
    """Poll the deployment; devices that succeed are recorded as last good."""
    return _check(state, "deployment", remember_good=True)


def check_rollback(state: State) -> State:
    """Poll the rollback (the last-good records stay as they are)."""
    return _check(state, "rollback", remember_good=False)


# --- rollback -----------------------------------------------------------------------------------


def rollback(state: State) -> State:
    """Restore each FAILED / TIMED_OUT device's last good deployment, replacing the failed instance."""
    run, s3, bucket = state["run"]["name"], clients.s3(), cfg.env(cfg.ARTIFACTS_BUCKET)
    pace, records = _Pacer(), []
    for device in state["deployment"]["devices"]:
        if device["status"] not in (FAILED, TIMED_OUT):
            continue
        label, device_id, failed = device["device"], device["device_id"], device["instance_id"]
        record = {"device": label, "device_id": device_id, "replaced": failed, "manifest_key": None}
        good = read_json(s3, bucket, last_good_key(label))
        if good is None:
            skipped = {**record, "replaced": None, "instance_id": None}
            records.append({**skipped, "status": SKIPPED, "status_description": NO_EARLIER_GOOD})
            continue
        key = rollback_key(run, label)
        write_json(s3, bucket, key, {**good, "rollback_of": run})
        instances = _instances(device_id)
        adopted = _tagged(instances, ROLLBACK_TAG, run)
        still_running = None if adopted else _running(instances, good["instance_name"], exclude=failed)
        if adopted:
            instance_id, status, description = str(adopted["ApplicationInstanceId"]), IN_PROGRESS, "rollback requested"
        elif still_running:
            instance_id, status = str(still_running["ApplicationInstanceId"]), SUCCEEDED
            description = f"the earlier instance {instance_id} still runs: nothing to restore"
        else:
            pace()
            instance_id = _create(
                good["instance_name"],
                f"rollback of {run} to {good['run']}"[:255],
                device_id,
                good["manifest"],
                good["overrides"],
                failed,
                {ROLLBACK_TAG: run},
            )
            status, description = IN_PROGRESS, f"rollback to run {good['run']} requested"
        records.append(
            {
                **record,
                "instance_id": instance_id,
                "status": status,
                "status_description": description,
                "manifest_key": key,
            }
        )
    timeout = cfg.settings().timing.deployment_timeout_seconds
    return loop_started(state, "rollback", timeout, status=_overall(records, expired=False), devices=records)


deploy_handler = step(deploy)
check_handler = step(check)
rollback_handler = step(rollback)
check_rollback_handler = step(check_rollback)
