"""State and rules of the local Panorama service: packages, package versions, application instances, devices.

Pure Python behind one lock; no HTTP (``panorama_protocol`` and ``panorama`` serve it). Methods take
Python arguments and return dicts shaped like the API's responses (member names of the carried model),
built under the lock so a caller never sees a half-updated record. Errors are :class:`PanoramaError`
subclasses named like the model's exceptions.

Package objects (``package.json``, descriptors, assets) live in a real bucket of the emulator's S3,
reached through an :class:`ObjectStore`: :class:`MotoS3Store` (moto's S3 in this process, the case
when the service is mounted on moto's server) or :class:`S3ClientStore` (any boto3 S3 client).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import threading
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from panorama_app.manifest.rules import ManifestError
from panorama_app.manifest.validation import (
    validate_descriptor,
    validate_graph,
    validate_overrides,
    validate_package,
)

#: moto's default account: what CloudFormation's ``AWS::AccountId`` is in the emulator.
DEFAULT_ACCOUNT_ID = "123456789012"
DEFAULT_REGION = "us-east-1"
#: Panorama's quota of versions (patch versions) per package.
MAX_VERSIONS_PER_PACKAGE = 20
VERSIONS_QUOTA_CODE = "package-versions-per-package"
#: Items per page of the list operations when MaxResults is not given (the model's maximum).
DEFAULT_PAGE_SIZE = 25
_STATUS_DESCRIPTION_LIMIT = 255
_SYSTEM_PACKAGES = "panorama::"
_PARAMETER_TYPES = frozenset({"boolean", "float32", "int32", "string"})

REGISTER_PENDING, REGISTER_COMPLETED, REGISTER_FAILED = "REGISTER_PENDING", "REGISTER_COMPLETED", "FAILED"
DEPLOYMENT_PENDING, DEPLOYMENT_IN_PROGRESS = "DEPLOYMENT_PENDING", "DEPLOYMENT_IN_PROGRESS"
DEPLOYMENT_SUCCEEDED, DEPLOYMENT_FAILED, REMOVAL_SUCCEEDED = (
    "DEPLOYMENT_SUCCEEDED",
    "DEPLOYMENT_FAILED",
    "REMOVAL_SUCCEEDED",
)
_DEPLOYING = frozenset({DEPLOYMENT_PENDING, "DEPLOYMENT_REQUESTED", DEPLOYMENT_IN_PROGRESS})
#: ListApplicationInstances' StatusFilter → the statuses it selects.
STATUS_FILTERS = {
    "DEPLOYMENT_SUCCEEDED": frozenset({DEPLOYMENT_SUCCEEDED}),
    "DEPLOYMENT_ERROR": frozenset({"DEPLOYMENT_ERROR"}),
    "DEPLOYMENT_FAILED": frozenset({DEPLOYMENT_FAILED}),
    "REMOVAL_SUCCEEDED": frozenset({REMOVAL_SUCCEEDED}),
    "REMOVAL_FAILED": frozenset({"REMOVAL_FAILED"}),
    "PROCESSING_DEPLOYMENT": _DEPLOYING,
    "PROCESSING_REMOVAL": frozenset({"REMOVAL_PENDING", "REMOVAL_REQUESTED", "REMOVAL_IN_PROGRESS"}),
}
DEFAULT_FAILURE = "the application failed to start on the device (failure injected in the local Panorama service)"


# --- errors ----------------------------------------------------------------------------------------


class PanoramaError(Exception):
    """An answer of the service that is an error: ``code`` names the model's exception shape."""

    code: ClassVar[str] = "InternalServerException"
    status: ClassVar[int] = 500

    def __init__(self, message: str, **members: Any) -> None:
        super().__init__(message)
        self.message = message
        self.members = members


class InternalServerException(PanoramaError):
    """A fault of the service itself."""


class ValidationException(PanoramaError):
    """The request breaks a rule of the API or of Panorama's documents (HTTP 400)."""

    code = "ValidationException"
    status = 400

    def __init__(
        self,
        message: str,
        *,
        reason: str = "OTHER",
        fields: Iterable[tuple[str, str]] = (),
        arguments: Mapping[str, str] | None = None,
    ) -> None:
        members: dict[str, Any] = {"Reason": reason}
        listed = [{"Name": name, "Message": text} for name, text in fields]
        if listed:
            members["Fields"] = listed
        if arguments:
            members["ErrorArguments"] = [{"Name": k, "Value": v} for k, v in arguments.items()]
        super().__init__(message, **members)


class ResourceNotFoundException(PanoramaError):
    """No resource with that id (HTTP 404)."""

    code = "ResourceNotFoundException"
    status = 404

    def __init__(self, message: str, resource_id: str, resource_type: str) -> None:
        super().__init__(message, ResourceId=resource_id, ResourceType=resource_type)


class ConflictException(PanoramaError):
    """The resource exists already, or is in a state that forbids the request (HTTP 409)."""

    code = "ConflictException"
    status = 409

    def __init__(self, message: str, resource_id: str, resource_type: str) -> None:
        super().__init__(message, ResourceId=resource_id, ResourceType=resource_type)


class ServiceQuotaExceededException(PanoramaError):
    """A quota of the service would be exceeded (HTTP 402)."""

    code = "ServiceQuotaExceededException"
    status = 402

    def __init__(self, message: str, quota_code: str, resource_id: str, resource_type: str) -> None:
        super().__init__(
            message, QuotaCode=quota_code, ServiceCode="panorama", ResourceId=resource_id, ResourceType=resource_type
        )


# --- storage ---------------------------------------------------------------------------------------


class ObjectStore(Protocol):
    """The S3 operations the service needs for package storage."""

    def ensure_bucket(self, bucket: str, region: str) -> None:
        """Create ``bucket`` unless it exists."""

    def read(self, bucket: str, key: str) -> bytes | None:
        """The object's bytes, or None when there is no such object (or bucket)."""


class MotoS3Store:
    """moto's S3 of this process: the emulator's S3 when the service is mounted on moto's server."""

    def __init__(self, account_id: str = DEFAULT_ACCOUNT_ID, partition: str = "aws") -> None:
        self.account_id, self.partition = account_id, partition

    def _backend(self) -> Any:
        from moto.s3.models import s3_backends

        return s3_backends[self.account_id][self.partition]

    def ensure_bucket(self, bucket: str, region: str) -> None:
        """Create ``bucket`` in moto unless this account has it."""
        backend = self._backend()
        if bucket not in backend.buckets:
            backend.create_bucket(bucket, region)

    def read(self, bucket: str, key: str) -> bytes | None:
        """The object's bytes from moto's S3."""
        from moto.s3.exceptions import MissingBucket

        try:
            found = self._backend().get_object(bucket, key)
        except MissingBucket:
            return None
        return None if found is None else bytes(found.value)


class S3ClientStore:
    """Any boto3 S3 client (e.g. one pointed at the emulator by ``AWS_ENDPOINT_URL``)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def ensure_bucket(self, bucket: str, region: str) -> None:
        """Create ``bucket`` unless HeadBucket finds it."""
        from botocore.exceptions import ClientError

        try:
            self.client.head_bucket(Bucket=bucket)
        except ClientError:
            location = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
            self.client.create_bucket(Bucket=bucket, **location)

    def read(self, bucket: str, key: str) -> bytes | None:
        """GetObject's body; None for a missing key or bucket."""
        from botocore.exceptions import ClientError

        try:
            return bytes(self.client.get_object(Bucket=bucket, Key=key)["Body"].read())
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("NoSuchKey", "NoSuchBucket", "404"):
                return None
            raise


# --- records ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    """How many describes a resource needs before it reaches its final status (0: at the first one).

    A package version answers REGISTER_PENDING to its first ``registration_describes``
    DescribePackageVersion calls; an application instance answers DEPLOYMENT_PENDING to its first
    ``pending_describes`` DescribeApplicationInstance calls, then DEPLOYMENT_IN_PROGRESS to the next
    ``in_progress_describes``.
    """

    registration_describes: int = 1
    pending_describes: int = 1
    in_progress_describes: int = 1


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _random_id(prefix: str) -> str:
    return prefix + base64.b32encode(uuid.uuid4().bytes).decode("ascii").lower().rstrip("=")[:26]


def _short(text: str) -> str:
    """A status description within the model's 255 characters."""
    text = " ".join(text.split())
    return text if len(text) <= _STATUS_DESCRIPTION_LIMIT else text[: _STATUS_DESCRIPTION_LIMIT - 1] + "…"


def device_id_for_name(name: str) -> str:
    """The deterministic id the local service gives a device configured only by name."""
    digest = base64.b32encode(hashlib.sha256(name.encode("utf-8")).digest()).decode("ascii").lower()
    return f"device-{digest[:26]}"


@dataclass
class _Device:
    device_id: str
    name: str
    created: dt.datetime
    serial: str


@dataclass
class _Version:
    version: str
    patch: str
    registered: dt.datetime
    pending: int
    outcome: str
    outcome_description: str | None
    manifest: dict[str, Any] | None
    status: str = REGISTER_PENDING
    description: str | None = None


@dataclass
class _Package:
    package_id: str
    name: str
    arn: str
    created: dt.datetime
    tags: dict[str, str]
    storage: dict[str, str]
    versions: dict[tuple[str, str], _Version] = field(default_factory=dict)
    latest: dict[str, str] = field(default_factory=dict)


@dataclass
class _Instance:
    instance_id: str
    arn: str
    name: str
    description: str | None
    device_id: str
    created: dt.datetime
    role_arn: str | None
    replaces: str | None
    tags: dict[str, str]
    contexts: tuple[str, ...]
    uses: frozenset[tuple[str, str, str]]
    fail_reason: str | None
    status: str = DEPLOYMENT_PENDING
    status_description: str = "deployment requested"
    updated: dt.datetime = field(default_factory=_now)
    describes: int = 0


# --- the backend -----------------------------------------------------------------------------------


class PanoramaBackend:
    """Everything the local Panorama service knows, for one account and Region, behind one lock."""

    def __init__(
        self,
        account_id: str = DEFAULT_ACCOUNT_ID,
        region: str = DEFAULT_REGION,
        *,
        store: ObjectStore | None = None,
        progress: Progress | None = None,
        devices: Iterable[Any] = (),
    ) -> None:
        self.account_id, self.region = account_id, region
        self.store: ObjectStore = store if store is not None else MotoS3Store(account_id)
        self.progress = progress or Progress()
        self._lock = threading.RLock()
        self._devices: dict[str, _Device] = {}
        self._packages: dict[str, _Package] = {}
        self._instances: dict[str, _Instance] = {}
        self._failures: dict[str, list[str]] = {}
        self.configure_devices(devices)

    # -- setup used by the emulator, the CLI and tests --

    @property
    def storage_bucket(self) -> str:
        """The emulator's S3 bucket that holds every package's storage location."""
        return f"panorama-local-storage-{self.account_id}-{self.region}"

    def configure_devices(self, devices: Iterable[Any]) -> list[dict[str, Any]]:
        """Replace the appliances: each a config device (``id`` and/or ``name``), a mapping, or a name.

        A device given only by name gets :func:`device_id_for_name`; one given by id is named by it.
        """
        configured: dict[str, _Device] = {}
        for item in devices:
            device_id: Any
            name: Any
            if isinstance(item, str):
                device_id, name = None, item
            elif isinstance(item, Mapping):
                device_id, name = item.get("id"), item.get("name")
            else:
                device_id, name = getattr(item, "id", None), getattr(item, "name", None)
            if not device_id and not name:
                raise ValueError(f"a device needs an id or a name: {item!r}")
            key = str(device_id or device_id_for_name(str(name)))
            serial = str(int(hashlib.sha256(key.encode()).hexdigest(), 16))[:12]
            configured[key] = _Device(key, str(name or key), _now(), serial)
        with self._lock:
            for device_id, device in configured.items():
                known = self._devices.get(device_id)
                if known is not None and known.name == device.name:
                    configured[device_id] = known
            self._devices = configured
            return [self._device_summary(d) for d in configured.values()]

    def fail_next_deployments(self, device: str, count: int = 1, reason: str | None = None) -> int:
        """Make the next ``count`` deployments on ``device`` (id or name) end DEPLOYMENT_FAILED.

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
            pending.extend([_short(reason or DEFAULT_FAILURE)] * count)
            return len(pending)

    def reset(self) -> None:
        """Forget packages, application instances and pending failures (devices and settings stay)."""
        with self._lock:
            self._packages.clear()
            self._instances.clear()
            self._failures.clear()

    # -- devices --

    def _device(self, device: str, by_name: bool = False) -> _Device:
        found = self._devices.get(device)
        if found is None and by_name:
            found = next((d for d in self._devices.values() if d.name == device), None)
        if found is None:
            raise ResourceNotFoundException(f"device {device} not found", device, "Device")
        return found

    def _device_summary(self, device: _Device) -> dict[str, Any]:
        return {
            "DeviceId": device.device_id,
            "Name": device.name,
            "Brand": "AWS_PANORAMA",
            "Type": "PANORAMA_APPLIANCE",
            "ProvisioningStatus": "SUCCEEDED",
            "DeviceAggregatedStatus": "ONLINE",
            "CurrentSoftware": "6.2.1",
            "CreatedTime": device.created,
            "LastUpdatedTime": device.created,
            "Tags": {},
        }

    def list_devices(
        self,
        name_filter: str | None = None,
        status_filter: str | None = None,
        sort_by: str | None = None,
        sort_order: str | None = None,
    ) -> list[dict[str, Any]]:
        """Device summaries: names starting with ``name_filter``, sorted as asked."""
        with self._lock:
            devices = [self._device_summary(d) for d in self._devices.values() if d.name.startswith(name_filter or "")]
        if status_filter:
            devices = [d for d in devices if d["DeviceAggregatedStatus"] == status_filter]
        key = {
            "DEVICE_ID": "DeviceId",
            "CREATED_TIME": "CreatedTime",
            "NAME": "Name",
            "DEVICE_AGGREGATED_STATUS": "DeviceAggregatedStatus",
        }.get(sort_by or "CREATED_TIME", "CreatedTime")
        devices.sort(key=lambda d: (d[key], d["DeviceId"]), reverse=sort_order == "DESCENDING")
        return devices

    def describe_device(self, device_id: str) -> dict[str, Any]:
        """DescribeDevice: the appliance, online and provisioned."""
        with self._lock:
            device = self._device(device_id)
            described = self._device_summary(device)
        del described["LastUpdatedTime"]
        described.update(
            {
                "Arn": f"arn:aws:panorama:{self.region}:{self.account_id}:device/{device.device_id}",
                "SerialNumber": device.serial,
                "DeviceConnectionStatus": "ONLINE",
                "LatestSoftware": described["CurrentSoftware"],
                "CurrentNetworkingStatus": {
                    "Ethernet0Status": {"ConnectionStatus": "CONNECTED", "IpAddress": "127.0.0.1"},
                    "LastUpdatedTime": device.created,
                },
            }
        )
        return described

    # -- packages --

    def _package(self, reference: str, owner_account: str | None = None) -> _Package:
        """A package by id or by ``packageName/<name>`` (both forms are accepted by the service)."""
        found: _Package | None = None
        if owner_account in (None, self.account_id):
            if reference.startswith("packageName/"):
                name = reference.removeprefix("packageName/")
                found = next((p for p in self._packages.values() if p.name == name), None)
            else:
                found = self._packages.get(reference)
        if found is None:
            raise ResourceNotFoundException(f"package {reference} not found", reference, "Package")
        return found

    def _package_by_name(self, name: str) -> _Package | None:
        return next((p for p in self._packages.values() if p.name == name), None)

    def create_package(self, name: str, tags: Mapping[str, str] | None = None) -> dict[str, Any]:
        """CreatePackage: a new package with its storage location (the bucket is made when missing)."""
        with self._lock:
            existing = self._package_by_name(name)
            if existing is not None:
                raise ConflictException(
                    f"a package named {name} already exists ({existing.package_id})", existing.package_id, "Package"
                )
            self.store.ensure_bucket(self.storage_bucket, self.region)  # again after an emulator reset
            package_id = _random_id("package-")
            prefix = f"{self.account_id}/nodePackages/{package_id}"
            package = _Package(
                package_id=package_id,
                name=name,
                arn=f"arn:aws:panorama:{self.region}:{self.account_id}:package/{package_id}",
                created=_now(),
                tags=dict(tags or {}),
                storage={
                    "Bucket": self.storage_bucket,
                    "RepoPrefixLocation": f"{prefix}/repo",
                    "GeneratedPrefixLocation": f"{prefix}/generated",
                    "BinaryPrefixLocation": f"{prefix}/binaries",
                    "ManifestPrefixLocation": f"{prefix}/manifests",
                },
            )
            self._packages[package_id] = package
            return {"PackageId": package_id, "Arn": package.arn, "StorageLocation": dict(package.storage)}

    def describe_package(self, package_id: str) -> dict[str, Any]:
        """DescribePackage, by id or ``packageName/<name>``."""
        with self._lock:
            package = self._package(package_id)
            return {
                "PackageId": package.package_id,
                "PackageName": package.name,
                "Arn": package.arn,
                "CreatedTime": package.created,
                "StorageLocation": dict(package.storage),
                "Tags": dict(package.tags),
            }

    def tag_package(self, package_id: str, tags: Mapping[str, str]) -> None:
        """Replace a package's tags (CloudFormation updates)."""
        with self._lock:
            self._package(package_id).tags = dict(tags)

    def delete_package(self, package_id: str) -> None:
        """Remove a package and its versions (CloudFormation deletes); unknown ids are ignored."""
        with self._lock:
            self._packages.pop(package_id, None)

    # -- package versions --

    def register_package_version(
        self,
        package_id: str,
        package_version: str,
        patch_version: str,
        mark_latest: bool = False,
        owner_account: str | None = None,
    ) -> None:
        """RegisterPackageVersion: read and check ``<ManifestPrefix>/<version>/<patch>.json``.

        A missing manifest is refused at once; every other problem (sha256, schema, assets,
        descriptors, name or version mismatch) shows as FAILED after the pending describes.
        """
        with self._lock:
            package = self._package(package_id, owner_account)
            key = (package_version, patch_version)
            if key in package.versions:
                raise ConflictException(
                    f"package {package.name} version {package_version} patch {patch_version} is already registered",
                    package.package_id,
                    "PackageVersion",
                )
            if len(package.versions) >= MAX_VERSIONS_PER_PACKAGE:
                raise ServiceQuotaExceededException(
                    f"package {package.name} has {len(package.versions)} registered versions; the quota is "
                    f"{MAX_VERSIONS_PER_PACKAGE} per package: deregister old patch versions first",
                    VERSIONS_QUOTA_CODE,
                    package.package_id,
                    "Package",
                )
            manifest_key = f"{package.storage['ManifestPrefixLocation']}/{package_version}/{patch_version}.json"
            body = self.store.read(package.storage["Bucket"], manifest_key)
            if body is None:
                raise ValidationException(
                    f"unknown patch version {patch_version} of package {package.name} {package_version}: "
                    f"no package manifest at s3://{package.storage['Bucket']}/{manifest_key}",
                    arguments={"PatchVersion": patch_version},
                )
            manifest, problem = self._check_package_manifest(package, package_version, patch_version, body)
            package.versions[key] = _Version(
                version=package_version,
                patch=patch_version,
                registered=_now(),
                pending=self.progress.registration_describes,
                outcome=REGISTER_FAILED if problem else REGISTER_COMPLETED,
                outcome_description=_short(problem) if problem else None,
                manifest=manifest,
            )
            if mark_latest or package_version not in package.latest:
                package.latest[package_version] = patch_version

    def _check_package_manifest(
        self, package: _Package, version: str, patch: str, body: bytes
    ) -> tuple[dict[str, Any] | None, str | None]:
        """The parsed package.json and the first reason registration fails (None: it succeeds)."""
        actual = hashlib.sha256(body).hexdigest()
        if actual != patch:
            return None, f"package.json has sha256 {actual}; the patch version must be the sha256 of its bytes"
        try:
            document = json.loads(body)
            validate_package(document)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            return None, f"package.json is not JSON: {error}"
        except ManifestError as error:
            return None, f"invalid package.json: {'; '.join(error.problems)}"
        node_package = document["nodePackage"]
        if node_package["name"] != package.name:
            return None, f"package.json names package {node_package['name']!r}, not {package.name!r}"
        if node_package["version"] != version:
            return None, f"package.json has version {node_package['version']!r}, registered as {version!r}"
        binaries = package.storage["BinaryPrefixLocation"]
        for asset in node_package.get("assets", []):
            for implementation in asset.get("implementations", []):
                if implementation["type"] == "system":
                    continue
                for uri, descriptor in (
                    (implementation["assetUri"], False),
                    (implementation.get("descriptorUri"), True),
                ):
                    if uri is None:
                        continue
                    problem = self._check_binary(package, f"{binaries}/{uri}", uri, descriptor)
                    if problem:
                        return None, f"asset {asset['name']}: {problem}"
        return document, None

    def _check_binary(self, package: _Package, key: str, name: str, descriptor: bool) -> str | None:
        data = self.store.read(package.storage["Bucket"], key)
        if data is None:
            return f"{name} not found under the package's binary prefix (s3://{package.storage['Bucket']}/{key})"
        if hashlib.sha256(data).hexdigest() != name.split(".", 1)[0]:
            return f"{name} is not named by the sha256 of its content"
        if descriptor:
            try:
                validate_descriptor(json.loads(data))
            except (UnicodeDecodeError, json.JSONDecodeError) as error:
                return f"descriptor {name} is not JSON: {error}"
            except ManifestError as error:
                return f"invalid descriptor {name}: {'; '.join(error.problems)}"
        return None

    def _version(self, package: _Package, version: str, patch: str | None) -> _Version:
        patch = patch if patch is not None else package.latest.get(version)
        found = package.versions.get((version, patch)) if patch is not None else None
        if found is None:
            what = f"package {package.name} version {version}" + (f" patch {patch}" if patch else "")
            raise ResourceNotFoundException(f"{what} not found", package.package_id, "PackageVersion")
        return found

    def describe_package_version(
        self,
        package_id: str,
        package_version: str,
        patch_version: str | None = None,
        owner_account: str | None = None,
    ) -> dict[str, Any]:
        """DescribePackageVersion (the latest patch when none is given); advances a pending registration."""
        with self._lock:
            package = self._package(package_id, owner_account)
            version = self._version(package, package_version, patch_version)
            if version.status == REGISTER_PENDING:
                if version.pending > 0:
                    version.pending -= 1
                else:
                    version.status, version.description = version.outcome, version.outcome_description
            described = {
                "PackageId": package.package_id,
                "PackageArn": package.arn,
                "PackageName": package.name,
                "PackageVersion": version.version,
                "PatchVersion": version.patch,
                "IsLatestPatch": package.latest.get(version.version) == version.patch,
                "OwnerAccount": self.account_id,
                "RegisteredTime": version.registered,
                "Status": version.status,
            }
            if version.description:
                described["StatusDescription"] = version.description
            return described

    def deregister_package_version(
        self,
        package_id: str,
        package_version: str,
        patch_version: str,
        updated_latest_patch_version: str | None = None,
        owner_account: str | None = None,
    ) -> None:
        """DeregisterPackageVersion; refused (ConflictException) while an application instance uses it."""
        with self._lock:
            package = self._package(package_id, owner_account)
            version = self._version(package, package_version, patch_version)
            users = sorted(
                i.instance_id
                for i in self._instances.values()
                if i.status != REMOVAL_SUCCEEDED and (package.package_id, package_version, patch_version) in i.uses
            )
            if users:
                raise ConflictException(
                    f"package {package.name} version {package_version} patch {patch_version} is used by "
                    f"application instance(s) {', '.join(users)}",
                    package.package_id,
                    "PackageVersion",
                )
            if updated_latest_patch_version and (package_version, updated_latest_patch_version) not in package.versions:
                raise ValidationException(
                    f"UpdatedLatestPatchVersion {updated_latest_patch_version} is not a patch of "
                    f"package {package.name} version {package_version}",
                    arguments={"UpdatedLatestPatchVersion": updated_latest_patch_version},
                )
            del package.versions[(package_version, version.patch)]
            if updated_latest_patch_version:
                package.latest[package_version] = updated_latest_patch_version
            elif package.latest.get(package_version) == version.patch:
                remaining = [v for v in package.versions.values() if v.version == package_version]
                if remaining:
                    package.latest[package_version] = max(remaining, key=lambda v: v.registered).patch
                else:
                    package.latest.pop(package_version, None)

    # -- application instances --

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
            uses = self._check_manifests(graph, override_document)
            instance_id = _random_id("applicationInstance-")
            pending = self._failures.get(device_id)
            instance = _Instance(
                instance_id=instance_id,
                arn=f"arn:aws:panorama:{self.region}:{self.account_id}:applicationInstance/{instance_id}",
                name=name or instance_id,
                description=description,
                device_id=device_id,
                created=_now(),
                role_arn=runtime_role_arn,
                replaces=replaces,
                tags=dict(tags or {}),
                contexts=_runtime_contexts(graph) or (name or instance_id,),
                uses=uses,
                fail_reason=pending.pop(0) if pending else None,
            )
            if pending is not None and not pending:
                del self._failures[device_id]
            self._instances[instance_id] = instance
            return instance_id

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
            found = self._resolve_version(package, version, patch, graph)
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

    def _resolve_version(self, package: _Package, version: str, patch: str | None, graph: Any) -> _Version | None:
        """The version a graph entry names; the code package is registered here when it has none.

        The pipeline never registers the code package (its container image needs Docker), so a package
        of the stack (made by CloudFormation) with no version at all, named without a patch version,
        whose node the graph wires with edges (a code node: a model node has none) is registered now.
        """
        patch = patch or package.latest.get(version)
        if patch is not None:
            return package.versions.get((version, patch))
        if package.versions or not _is_code_package(graph, f"{self.account_id}::{package.name}"):
            return None
        note = json.dumps({"localAutoRegistered": {"package": package.name, "version": version}}, sort_keys=True)
        auto = _Version(
            version=version,
            patch=hashlib.sha256(note.encode()).hexdigest(),
            registered=_now(),
            pending=0,
            outcome=REGISTER_COMPLETED,
            outcome_description=None,
            manifest=None,
            status=REGISTER_COMPLETED,
            description="registered by the local Panorama service (the code package is not built locally)",
        )
        package.versions[(version, auto.patch)] = auto
        package.latest[version] = auto.patch
        return auto

    def _advance(self, instance: _Instance) -> None:
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
                replaced.updated = _now()
        if status != instance.status:
            instance.status, instance.status_description, instance.updated = status, text, _now()

    def _instance(self, instance_id: str) -> _Instance:
        found = self._instances.get(instance_id)
        if found is None:
            raise ResourceNotFoundException(
                f"application instance {instance_id} not found", instance_id, "ApplicationInstance"
            )
        return found

    def _instance_view(self, instance: _Instance, full: bool) -> dict[str, Any]:
        device = self._devices.get(instance.device_id)
        reported = {
            DEPLOYMENT_IN_PROGRESS: ("RUNNING", "INSTALL_IN_PROGRESS"),
            DEPLOYMENT_SUCCEEDED: ("RUNNING", "RUNNING"),
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
            "HealthStatus": {DEPLOYMENT_SUCCEEDED: "RUNNING", DEPLOYMENT_FAILED: "ERROR"}.get(
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
                instance.updated = _now()

    def list_application_instances(
        self, device_id: str | None = None, status_filter: str | None = None
    ) -> list[dict[str, Any]]:
        """Instances, oldest first, of one device and/or a status group (listing does not advance them)."""
        selected = STATUS_FILTERS.get(status_filter) if status_filter else None
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


def _is_code_package(graph: Any, package: str) -> bool:
    wired = _graph_nodes_with_edges(graph)
    return any(
        n["name"] in wired and str(n["interface"]).rsplit(".", 1)[0] == package for n in graph["nodeGraph"]["nodes"]
    )


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


__all__ = [
    "DEFAULT_ACCOUNT_ID",
    "MAX_VERSIONS_PER_PACKAGE",
    "ConflictException",
    "InternalServerException",
    "MotoS3Store",
    "ObjectStore",
    "PanoramaBackend",
    "PanoramaError",
    "Progress",
    "ResourceNotFoundException",
    "S3ClientStore",
    "ServiceQuotaExceededException",
    "ValidationException",
    "device_id_for_name",
]
