"""Deploy the registered model to every configured appliance, and wait for it.

Steps (the API sequence: CreateApplicationInstance replacing the running instance, then
DescribeApplicationInstance until DEPLOYMENT_SUCCEEDED):

- :func:`deploy`: per device, build graph.json (device id, Region, both packages' patch versions
  pinned: the model's new one and the code package's that validate_input found registered) and take
  the stored camera overrides → CreateApplicationInstance replacing the instance
  that runs now → section ``deployment`` (IN_PROGRESS).
- :func:`check_deployment`: one DescribeApplicationInstance per device still in progress; a device
  that succeeds becomes its ``last-good`` deployment (what ``rollback.py`` restores). A failed or
  timed-out deployment is a status (FAILED / TIMED_OUT), not an exception: the state machine
  routes it to the rollback, and this step records itself as the run's ``failed_step``.

Idempotent: instances are tagged ``panopipe:run`` with the run name; a retried step adopts the
tagged instance instead of creating a second one. Creates are spaced by one second (the API's
quota). A device given by name is resolved with ListDevices (exact name); an unknown or ambiguous
name raises InvalidInput before anything is created, as does a manifest over the 51,200-character
payload limit.

Environment: ARTIFACTS_BUCKET, MANIFEST_TEMPLATE_KEY, RUNTIME_ROLE_ARN, STEP_SETTINGS, AWS_REGION.
Objects in the artifacts bucket: ``runs/<run>/deployment/<device>.json`` (what was sent) and
``deployments/<device>/last-good.json``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from lambda_handlers import app_instances, deployment_lock, settings
from lambda_handlers.app_instances import (
    RUN_TAG,
    Pacer,
    instances_on,
    others,
    remove,
    running,
    tagged,
)
from lambda_handlers.artifacts import last_good_key, load_template, model_spec, read_json, write_json
from lambda_handlers.aws import clients, panorama
from lambda_handlers.errors import InvalidInput
from lambda_handlers.state import (
    FAILED,
    IN_PROGRESS,
    TIMED_OUT,
    DeviceRecord,
    PackageVersion,
    RunState,
    loop_started,
    run_name,
)
from lambda_handlers.step import logger, state_name, step
from panorama_app.manifest import documents, validation
from panorama_app.manifest.rules import ManifestError

_REGISTRATION_FIELDS = PackageVersion.__required_keys__


def deployment_key(run: str, device: str) -> str:
    """Key of the manifest and overrides sent to ``device`` by ``run``."""
    return f"runs/{run}/deployment/{device}.json"


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


def _plans(state: RunState, device_ids: dict[str, str]) -> list[_Plan]:
    """Every device's manifest and overrides, built and checked before anything is created."""
    template = load_template(
        clients.s3(), settings.env(settings.ARTIFACTS_BUCKET), settings.env(settings.MANIFEST_TEMPLATE_KEY)
    )
    # The run's model, not the configured one: the graph's input parameters follow what was registered.
    spec, package, code = model_spec(template.spec, state["model"]), state["package"], state["code_package"]
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or ""
    run = run_name(state)
    plans = []
    for label, device_id in device_ids.items():
        try:
            graph = documents.graph(
                spec,
                template.account_id,
                values={"device_id": device_id, **({"region": region} if region else {})},
                patch_versions={spec.model_package: package["patch_version"], spec.code_package: code["patch_version"]},
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
                f"patch {package['patch_version'][:12]}, code patch {code['patch_version'][:12]}"[:255],
                manifest=_payload(graph, "graph.json", label),
                overrides=_payload(template.overrides, "camera overrides", label),
            )
        )
    return plans


def _deploy_one(state: RunState, plan: _Plan, pace: Pacer) -> DeviceRecord:
    """Create (or adopt) the device's instance; a refusal of this device is its FAILED record, not the batch's."""
    run, s3, bucket = run_name(state), clients.s3(), settings.env(settings.ARTIFACTS_BUCKET)
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
            "code_package": state["code_package"],
        },
    )
    record: DeviceRecord = {
        "device": plan.device,
        "device_id": plan.device_id,
        "instance_id": None,
        "replaced": None,
        "status": IN_PROGRESS,
        "status_description": "deployment requested",
    }
    instances = instances_on(plan.device_id)
    adopted = tagged(instances, RUN_TAG, run)
    if adopted:
        instance_id = str(adopted["ApplicationInstanceId"])
        described = panorama.client().describe_application_instance(ApplicationInstanceId=instance_id)
        logger.info("instance of this run adopted", extra={"device": plan.device, "instance_id": instance_id})
        return {**record, "instance_id": instance_id, "replaced": described.get("ApplicationInstanceIdToReplace")}
    current = running(instances, plan.name)
    replaced = str(current["ApplicationInstanceId"]) if current else None
    pace()
    created, refusal = app_instances.create_or_refusal(
        plan.name, plan.description, plan.device_id, plan.manifest, plan.overrides, replaced, {RUN_TAG: run}
    )
    if created is None:
        return {**record, "replaced": replaced, "status": FAILED, "status_description": refusal}
    # Left by an earlier fault: never two instances of the application on one device.
    extra = others(instances, plan.name, keep={created, *([replaced] if replaced else [])})
    if extra:
        logger.warning("removing further instances of the application", extra={"device": plan.device, "ids": extra})
        remove(extra)
    return {**record, "instance_id": created, "replaced": replaced}


@step
def deploy(state: RunState) -> RunState:
    """Create one application instance per device of the Map iteration's batch, replacing the running one."""
    deployment_lock.renew(state)
    batch = state["batch"]
    plans = _plans(state, {d["device"]: d["device_id"] for d in batch["devices"]})
    pace = Pacer(after_others=batch["index"] > 0)
    records = [_deploy_one(state, plan, pace) for plan in plans]
    timeout = settings.current().runs.deployment_timeout_seconds
    status = app_instances.overall(records, expired=False)
    return loop_started(state, "deployment", timeout, status=status, devices=records)


def _remember(run: str, device: DeviceRecord) -> None:
    """Make this deployment the device's last good one (what a later rollback restores)."""
    s3, bucket = clients.s3(), settings.env(settings.ARTIFACTS_BUCKET)
    sent = read_json(s3, bucket, deployment_key(run, device["device"]))
    good = {
        "instance_id": device["instance_id"],
        "device_id": device["device_id"],
        "instance_name": sent["instance_name"],
        "manifest": sent["manifest"],
        "overrides": sent["overrides"],
        "run": sent["run"],
        "package": sent["package"],
        "code_package": sent.get("code_package"),
    }
    write_json(s3, bucket, last_good_key(device["device"]), good)


@step
def check_deployment(state: RunState) -> RunState:
    """Poll the deployment; devices that succeed are recorded as last good.

    When the deployment failed or timed out, this step is the run's ``failed_step`` (the state
    machine then rolls back before the failure is reported).
    """
    deployment_lock.renew(state)
    run = run_name(state)
    polled = app_instances.poll_devices(state, "deployment", on_success=lambda device: _remember(run, device))
    if polled["deployment"].get("status") in (FAILED, TIMED_OUT):
        polled["failed_step"] = state_name(check_deployment)
    return polled
