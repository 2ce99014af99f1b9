"""Application instances of the local Panorama service: deployments that take several polls, and fail.

CreateApplicationInstance in AWS validates the application manifest (the graph) and its overrides
against the registered packages, then deploys asynchronously: the instance is DEPLOYMENT_PENDING,
then DEPLOYMENT_IN_PROGRESS, then DEPLOYMENT_SUCCEEDED or DEPLOYMENT_FAILED, and an instance it
replaces becomes REMOVAL_SUCCEEDED when the device swaps the applications (whatever the outcome).
The pipeline's deploy, check and rollback steps depend on all of that, so the local service checks
the graph with the same rules (``panorama_app.manifest``), refuses unknown devices, replaced
instances and unregistered or incomplete package versions (ValidationException: the operation models
no ResourceNotFoundException), advances statuses per describe (``Progress``), and can make the next
deployments on a device fail (:meth:`InstanceOperations.fail_next_deployments`), which is how tests
and ``make local`` show a rollback. A deployed instance reports HealthStatus NOT_AVAILABLE until the
application has started (one more describe), then RUNNING, or ERROR when the failure injected was
a crash (the deployment succeeded, the application does not run): AWS reports both, and a pipeline
that read only Status would call a crash-looping application a good deployment.
RemoveApplicationInstance is immediate.

With the local appliance on (``PanoramaBackend(appliance=ApplianceSettings(...))``, as ``panopipe local
up`` starts it) a deployed instance's application really runs (``local_aws.appliance``): its
HealthStatus then comes from the process — NOT_AVAILABLE until it reads its first frame, RUNNING while
it runs, ERROR once it has exited, with the end of its log in the status description — and removing or
replacing the instance stops it. Off, the application only reports RUNNING (or the injected crash).

Every package version a graph names must have been registered through RegisterPackageVersion, the
code package's too (``panopipe package-app`` builds and registers it, locally without Docker): a
version never registered, or named without a patch version while the package has none, is refused
with ValidationException, as AWS refuses it; the graph's ports and parameters are then checked
against the registered package.json interfaces of both packages.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from local_aws.appliance.deployments import deployment_of
from local_aws.panorama_devices import DeviceOperations
from local_aws.panorama_errors import ConflictException, ResourceNotFoundException, ValidationException
from local_aws.panorama_packages import PackageOperations
from local_aws.panorama_records import (
    DEPLOYMENT_FAILED,
    DEPLOYMENT_IN_PROGRESS,
    DEPLOYMENT_PENDING,
    DEPLOYMENT_SUCCEEDED,
    REGISTER_COMPLETED,
    REMOVAL_SUCCEEDED,
    InstanceRecord,
    PackageRecord,
    VersionRecord,
    now,
    random_id,
    short_text,
)
from panorama_app.manifest.rules import ManifestError
from panorama_app.manifest.validation import validate_graph, validate_overrides

_SYSTEM_PACKAGES = "panorama::"  # AWS's own packages (cameras, parameters): never in an account
_PARAMETER_TYPES = frozenset({"boolean", "float32", "int32", "string"})
_DEPLOYING = frozenset({DEPLOYMENT_PENDING, "DEPLOYMENT_REQUESTED", DEPLOYMENT_IN_PROGRESS})
#: ListApplicationInstances' StatusFilter → the statuses it selects.
_STATUS_FILTERS = {
    "DEPLOYMENT_SUCCEEDED": frozenset({DEPLOYMENT_SUCCEEDED}),
    "DEPLOYMENT_ERROR": frozenset({"DEPLOYMENT_ERROR"}),
    "DEPLOYMENT_FAILED": frozenset({DEPLOYMENT_FAILED}),
    "REMOVAL_SUCCEEDED": frozenset({REMOVAL_SUCCEEDED}),
    "REMOVAL_FAILED": frozenset({"REMOVAL_FAILED"}),
    "PROCESSING_DEPLOYMENT": _DEPLOYING,
    "PROCESSING_REMOVAL": frozenset({"REMOVAL_PENDING", "REMOVAL_REQUESTED", "REMOVAL_IN_PROGRESS"}),
}
_DEFAULT_FAILURE = "the application failed to start on the device (failure injected in the local Panorama service)"
_DEFAULT_CRASH = "the application exited after it started (crash injected in the local Panorama service)"


class InstanceOperations(PackageOperations, DeviceOperations):
    """The application-instance operations, and failure injection for deployments."""

    def fail_next_deployments(
        self, device: str, count: int = 1, reason: str | None = None, *, crash: bool = False
    ) -> int:
        """Make the next ``count`` deployments on ``device`` (id or name) fail.

        They end DEPLOYMENT_FAILED, or with ``crash`` DEPLOYMENT_SUCCEEDED with an application that
        stops (HealthStatus ERROR).

        ``count`` 0 cancels what is pending. Returns how many failures are pending for the device.
        """
        if count < 0:
            raise ValueError("count must be 0 or more")
        with self._lock:
            device_id = self._device(device, by_name=True).device_id
            if count == 0:
                self._failures.pop(device_id, None)
                return 0
            pending = self._failures.setdefault(device_id, [])
            default = _DEFAULT_CRASH if crash else _DEFAULT_FAILURE
            pending.extend([(crash, short_text(reason or default))] * count)
            return len(pending)

    def create_application_instance(
        self,
        *,
        manifest: str,
        device_id: str,
        name: str | None = None,
        description: str | None = None,
        overrides: str | None = None,
        runtime_role_arn: str | None = None,
        replaces: str | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> str:
        """CreateApplicationInstance: check the manifest, overrides, packages, device and replaced instance.

        The instance then moves through DEPLOYMENT_PENDING → DEPLOYMENT_IN_PROGRESS → DEPLOYMENT_SUCCEEDED
        (or DEPLOYMENT_FAILED when a failure was injected for the device) as it is described.
        """
        graph = _json_document(manifest, "ManifestPayload.PayloadData")
        override_document = _json_document(overrides, "ManifestOverridesPayload.PayloadData") if overrides else None
        with self._lock:
            if device_id not in self._devices:
                raise ValidationException(
                    f"DefaultRuntimeContextDevice {device_id}: no such device "
                    f"(devices: {', '.join(sorted(self._devices)) or 'none'})",
                    reason="FIELD_VALIDATION_FAILED",
                    fields=[("DefaultRuntimeContextDevice", "device not found")],
                )
            replaced = self._instances.get(replaces) if replaces else None
            if replaces and replaced is None:
                raise ValidationException(
                    f"ApplicationInstanceIdToReplace {replaces}: no such application instance",
                    reason="FIELD_VALIDATION_FAILED",
                    fields=[("ApplicationInstanceIdToReplace", "application instance not found")],
                )
            if replaced is not None and (replaced.device_id != device_id or replaced.status == REMOVAL_SUCCEEDED):
                raise ValidationException(
                    f"ApplicationInstanceIdToReplace {replaces}: it runs on {replaced.device_id} "
                    f"({replaced.status}); only an instance of device {device_id} that is not removed can be replaced",
                    reason="FIELD_VALIDATION_FAILED",
                    fields=[("ApplicationInstanceIdToReplace", "not replaceable")],
                )
            if replaced is not None and (conflict := self._replacement_conflict(replaced)):
                raise ConflictException(
                    f"ApplicationInstanceIdToReplace {replaces}: {conflict}",
                    resource_id=replaced.instance_id,
                    resource_type="ApplicationInstance",
                )
            uses = self._check_manifests(graph, override_document)
            instance_id = random_id("applicationInstance-")
            pending = self._failures.get(device_id)
            failure = pending.pop(0) if pending else None  # (crash?, reason)
            instance = InstanceRecord(
                instance_id=instance_id,
                arn=f"arn:aws:panorama:{self.region}:{self.account_id}:applicationInstance/{instance_id}",
                name=name or instance_id,
                description=description,
                device_id=device_id,
                created=now(),
                role_arn=runtime_role_arn,
                replaces=replaces,
                tags=dict(tags or {}),
                contexts=_runtime_contexts(graph) or (name or instance_id,),
                uses=uses,
                fail_reason=failure[1] if failure and not failure[0] else None,
                crash_reason=failure[1] if failure and failure[0] else None,
                graph=graph,
                overrides=override_document,
            )
            if pending is not None and not pending:
                del self._failures[device_id]
            self._instances[instance_id] = instance
            return instance_id

    def _replacement_conflict(self, replaced: InstanceRecord) -> str | None:
        """Why ``replaced`` cannot be replaced now: it is being removed, or another deployment replaces it.

        AWS refuses a second replacement of an instance while the first is under way, so two runs
        deploying at once cannot leave two instances of one application side by side on a device.
        """
        if replaced.status in _STATUS_FILTERS["PROCESSING_REMOVAL"]:
            return f"it is being removed ({replaced.status})"
        for other in self._instances.values():
            if other.replaces == replaced.instance_id and other.status in (DEPLOYMENT_PENDING, DEPLOYMENT_IN_PROGRESS):
                return f"it is already being replaced by {other.instance_id} ({other.status})"
        return None

    def _check_manifests(self, graph: Any, overrides: Any | None) -> frozenset[tuple[str, str, str]]:
        """Validate graph and overrides; every package of ours must be registered and complete."""
        try:
            validate_graph(graph, account_id=self.account_id)
        except ManifestError as error:
            raise _manifest_rejected("ManifestPayload", error) from error
        except (KeyError, TypeError, AttributeError) as error:
            raise ValidationException(f"ManifestPayload: not a nodeGraph document ({error!r})") from error
        packages, uses, problems = {}, set(), []
        for entry in graph["nodeGraph"]["packages"]:
            account, _, package_name = str(entry["name"]).partition("::")
            if f"{account}::" == _SYSTEM_PACKAGES:
                continue
            version, patch = str(entry["version"]), entry.get("patchVersion")
            what = f"package {entry['name']} version {version}" + (f" patch {patch}" if patch else "")
            package = self._package_by_name(package_name) if account == self.account_id else None
            if package is None:
                problems.append(f"{what}: no such package in account {self.account_id}")
                continue
            found = self._resolve_version(package, version, patch)
            if found is None:
                problems.append(f"{what}: not registered")
            elif found.status != REGISTER_COMPLETED:
                problems.append(f"{what}: status {found.status}, not {REGISTER_COMPLETED}")
            else:
                uses.add((package.package_id, version, found.patch))
                if found.manifest is not None:
                    packages[package_name] = found.manifest
        if problems:
            raise ValidationException(
                "ManifestPayload: " + "; ".join(problems), arguments={"ManifestPayload": "packages"}
            )
        try:
            validate_graph(graph, packages=packages, account_id=self.account_id)
            if overrides is not None:
                validate_overrides(overrides, graph)
        except ManifestError as error:
            raise _manifest_rejected(
                "ManifestPayload" if error.document == "graph.json" else "ManifestOverridesPayload", error
            ) from error
        except (KeyError, TypeError, AttributeError) as error:
            raise ValidationException(
                f"ManifestOverridesPayload: not a nodeGraphOverrides document ({error!r})"
            ) from error
        replaced = {o["replace"] for o in (overrides or {}).get("nodeGraphOverrides", {}).get("nodeOverrides", [])}
        mandatory = [
            n["name"] for n in graph["nodeGraph"]["nodes"] if n.get("overrideMandatory") and n["name"] not in replaced
        ]
        if mandatory:
            raise ValidationException(
                f"ManifestOverridesPayload: node(s) {', '.join(mandatory)} must be overridden (overrideMandatory)"
            )
        return frozenset(uses)

    def _resolve_version(self, package: PackageRecord, version: str, patch: str | None) -> VersionRecord | None:
        """The version a graph entry names: its patch version, or the latest patch of ``version``."""
        patch = patch or package.latest.get(version)
        return package.versions.get((version, patch)) if patch is not None else None

    def _advance(self, instance: InstanceRecord) -> None:
        if instance.status == DEPLOYMENT_SUCCEEDED and self.appliance is not None and not instance.crash_reason:
            self._watch_application(instance)
            return
        if instance.status == DEPLOYMENT_SUCCEEDED and instance.health == "NOT_AVAILABLE":
            # the application has started on the device: it runs, or it crashed
            instance.health = "ERROR" if instance.crash_reason else "RUNNING"
            if instance.crash_reason:
                instance.status_description = f"{instance.status_description}; {instance.crash_reason}"
            instance.updated = now()
            return
        if instance.status not in _DEPLOYING:
            return
        instance.describes += 1
        progress = self.progress
        if instance.describes <= progress.pending_describes:
            status, text = DEPLOYMENT_PENDING, "deployment requested"
        elif instance.describes <= progress.pending_describes + progress.in_progress_describes:
            status, text = DEPLOYMENT_IN_PROGRESS, f"installing on device {instance.device_id}"
        else:
            if instance.fail_reason:
                status, text = DEPLOYMENT_FAILED, instance.fail_reason
            else:
                status, text = DEPLOYMENT_SUCCEEDED, f"running on device {instance.device_id}"
            replaced = self._instances.get(instance.replaces or "")
            if replaced is not None and replaced.status != REMOVAL_SUCCEEDED:
                # the device swapped the applications: the old one is gone whatever the new one does
                replaced.status = REMOVAL_SUCCEEDED
                replaced.status_description = f"replaced by {instance.instance_id}"
                replaced.updated = now()
                if self.appliance is not None:
                    self.appliance.stop(replaced.instance_id)
        if status != instance.status:
            instance.status, instance.status_description, instance.updated = status, text, now()
            if status == DEPLOYMENT_SUCCEEDED and self.appliance is not None and not instance.crash_reason:
                self._start_application(instance)

    def _start_application(self, instance: InstanceRecord) -> None:
        """The device starts the deployed application (the local appliance); a graph it cannot run: ERROR."""
        assert self.appliance is not None
        try:
            deployment = deployment_of(
                instance, self._packages, self.store, self._devices[instance.device_id].name, self.region
            )
        except (ValueError, KeyError, TypeError) as error:
            instance.health = "ERROR"
            instance.status_description = short_text(f"{instance.status_description}; {error}")
            return
        self.appliance.start(deployment)

    def _watch_application(self, instance: InstanceRecord) -> None:
        """HealthStatus from the application's process; an ERROR stays (the device does not restart it)."""
        assert self.appliance is not None
        if instance.health == "ERROR":
            return
        health, reason = self.appliance.health(instance.instance_id)
        if health != instance.health:
            instance.health, instance.updated = health, now()
            if reason:
                instance.status_description = short_text(f"{instance.status_description}; {reason}")

    def _instance(self, instance_id: str) -> InstanceRecord:
        found = self._instances.get(instance_id)
        if found is None:
            raise ResourceNotFoundException(
                f"application instance {instance_id} not found", instance_id, "ApplicationInstance"
            )
        return found

    def _instance_view(self, instance: InstanceRecord, full: bool) -> dict[str, Any]:
        device = self._devices.get(instance.device_id)
        deployed = {"NOT_AVAILABLE": "LAUNCHED", "RUNNING": "RUNNING", "ERROR": "STOPPED"}[instance.health]
        reported = {
            DEPLOYMENT_IN_PROGRESS: ("RUNNING", "INSTALL_IN_PROGRESS"),
            DEPLOYMENT_SUCCEEDED: ("RUNNING", deployed),
            DEPLOYMENT_FAILED: ("RUNNING", "LAUNCH_ERROR"),
            REMOVAL_SUCCEEDED: ("REMOVED", "STOPPED"),
        }.get(instance.status)
        view: dict[str, Any] = {
            "ApplicationInstanceId": instance.instance_id,
            "Arn": instance.arn,
            "Name": instance.name,
            "Description": instance.description,
            "DefaultRuntimeContextDevice": instance.device_id,
            "DefaultRuntimeContextDeviceName": device.name if device else None,
            "CreatedTime": instance.created,
            "Status": instance.status,
            "StatusDescription": instance.status_description,
            "HealthStatus": {DEPLOYMENT_SUCCEEDED: instance.health, DEPLOYMENT_FAILED: "ERROR"}.get(
                instance.status, "NOT_AVAILABLE"
            ),
            "RuntimeContextStates": [
                {
                    "DesiredState": reported[0],
                    "DeviceReportedStatus": reported[1],
                    "DeviceReportedTime": instance.updated,
                    "RuntimeContextName": context,
                }
                for context in instance.contexts
            ]
            if reported
            else [],
            "Tags": dict(instance.tags),
        }
        if full:
            view.update(
                {
                    "ApplicationInstanceIdToReplace": instance.replaces,
                    "LastUpdatedTime": instance.updated,
                    "RuntimeRoleArn": instance.role_arn,
                }
            )
        return {k: v for k, v in view.items() if v is not None}

    def describe_application_instance(self, instance_id: str) -> dict[str, Any]:
        """DescribeApplicationInstance; each call moves a deployment one step on."""
        with self._lock:
            instance = self._instance(instance_id)
            self._advance(instance)
            return self._instance_view(instance, full=True)

    def remove_application_instance(self, instance_id: str) -> None:
        """RemoveApplicationInstance: the instance is REMOVAL_SUCCEEDED (at once, locally)."""
        with self._lock:
            instance = self._instance(instance_id)
            if instance.status != REMOVAL_SUCCEEDED:
                instance.status, instance.status_description = REMOVAL_SUCCEEDED, "removed"
                instance.updated = now()
            if self.appliance is not None:
                self.appliance.stop(instance_id)

    def list_application_instances(
        self, device_id: str | None = None, status_filter: str | None = None
    ) -> list[dict[str, Any]]:
        """Instances, oldest first, of one device and/or a status group (listing does not advance them)."""
        selected = _STATUS_FILTERS.get(status_filter) if status_filter else None
        with self._lock:
            return [
                self._instance_view(i, full=False)
                for i in sorted(self._instances.values(), key=lambda i: (i.created, i.instance_id))
                if (device_id is None or i.device_id == device_id) and (selected is None or i.status in selected)
            ]


def _json_document(text: str, member: str) -> Any:
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValidationException(f"{member} is not JSON: {error}", fields=[(member, "not JSON")]) from error
    if not isinstance(document, dict):
        raise ValidationException(f"{member} must be a JSON object", fields=[(member, "not a JSON object")])
    return document


def _manifest_rejected(member: str, error: ManifestError) -> ValidationException:
    return ValidationException(
        f"{member}: invalid {error.document}: {'; '.join(error.problems)}",
        reason="FIELD_VALIDATION_FAILED",
        fields=[(member, problem) for problem in error.problems],
    )


def _graph_nodes_with_edges(graph: Any) -> set[str]:
    wired = set()
    for edge in graph["nodeGraph"].get("edges", []):
        wired |= {str(edge["producer"]).partition(".")[0], str(edge["consumer"]).partition(".")[0]}
    return wired


def _runtime_contexts(graph: Any) -> tuple[str, ...]:
    """Names of the graph's code nodes (our packages' nodes with edges): what the device reports on."""
    wired = _graph_nodes_with_edges(graph)
    return tuple(
        str(n["name"])
        for n in graph["nodeGraph"]["nodes"]
        if n["name"] in wired
        and n["interface"] not in _PARAMETER_TYPES
        and not str(n["interface"]).startswith(_SYSTEM_PACKAGES)
    )
