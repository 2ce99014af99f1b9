"""Packages and package versions of the local Panorama service, with the checks the real service makes.

RegisterPackageVersion is where a broken package shows in AWS, asynchronously: the call succeeds
and the version ends FAILED with a status description. The pipeline must handle that, so the local
service reads the registered ``package.json`` from the package's storage location
(``panorama_object_store``) and checks what the real service checks — the patch version is the
sha256 of the manifest; the manifest against the official schema (``panorama_schema``) and the
package's name and version; every asset and descriptor present under the binary prefix and named by
its sha256; each descriptor against the official schema and of the asset's kind (a model asset has
an ``mlModelDescriptor``, a container asset a ``runtimeDescriptor``); and a container asset a
tarball (``docker export`` of the image, gzipped) that holds the file its descriptor's entry runs
(``/panorama/app.py``) — then reports the outcome after the pending describes
(``Progress.registration_describes``). A missing manifest is refused at once (ValidationException),
a version registered twice is ConflictException, the 21st version of a package is
ServiceQuotaExceededException (Panorama's quota of 20), and a version an application instance uses
cannot be deregistered (ConflictException), as in AWS. Nothing is registered that was not uploaded
and registered through these calls: the code package too is built and registered by the project
(``panopipe package-app``).
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from collections.abc import Mapping
from typing import Any

from local_aws.panorama_errors import (
    ConflictException,
    ResourceNotFoundException,
    ServiceQuotaExceededException,
    ValidationException,
)
from local_aws.panorama_records import (
    REGISTER_COMPLETED,
    REGISTER_FAILED,
    REGISTER_PENDING,
    REMOVAL_SUCCEEDED,
    BackendState,
    PackageRecord,
    VersionRecord,
    now,
    random_id,
    short_text,
)
from local_aws.panorama_schema import DESCRIPTOR, PACKAGE, schema_problems
from panorama_app.manifest.rules import ManifestError
from panorama_app.manifest.validation import validate_descriptor, validate_package

#: The descriptor a non-system asset of each implementation type carries.
_DESCRIPTOR_OF = {"model": "mlModelDescriptor", "container": "runtimeDescriptor"}

#: Panorama's quota of versions (patch versions) per package.
MAX_VERSIONS_PER_PACKAGE = 20
_VERSIONS_QUOTA_CODE = "package-versions-per-package"


class PackageOperations(BackendState):
    """CreatePackage, DescribePackage and the package-version operations."""

    @property
    def storage_bucket(self) -> str:
        """The emulator's S3 bucket that holds every package's storage location."""
        return f"panorama-local-storage-{self.account_id}-{self.region}"

    def _package(self, reference: str, owner_account: str | None = None) -> PackageRecord:
        """A package by id or by ``packageName/<name>`` (both forms are accepted by the service)."""
        found: PackageRecord | None = None
        if owner_account in (None, self.account_id):
            if reference.startswith("packageName/"):
                name = reference.removeprefix("packageName/")
                found = next((p for p in self._packages.values() if p.name == name), None)
            else:
                found = self._packages.get(reference)
        if found is None:
            raise ResourceNotFoundException(f"package {reference} not found", reference, "Package")
        return found

    def _package_by_name(self, name: str) -> PackageRecord | None:
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
            package_id = random_id("package-")
            prefix = f"{self.account_id}/nodePackages/{package_id}"
            package = PackageRecord(
                package_id=package_id,
                name=name,
                arn=f"arn:aws:panorama:{self.region}:{self.account_id}:package/{package_id}",
                created=now(),
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
                    _VERSIONS_QUOTA_CODE,
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
            package.versions[key] = VersionRecord(
                version=package_version,
                patch=patch_version,
                registered=now(),
                pending=self.progress.registration_describes,
                outcome=REGISTER_FAILED if problem else REGISTER_COMPLETED,
                outcome_description=short_text(problem) if problem else None,
                manifest=manifest,
            )
            if mark_latest or package_version not in package.latest:
                package.latest[package_version] = patch_version

    def _check_package_manifest(
        self, package: PackageRecord, version: str, patch: str, body: bytes
    ) -> tuple[dict[str, Any] | None, str | None]:
        """The parsed package.json and the first reason registration fails (None: it succeeds)."""
        actual = hashlib.sha256(body).hexdigest()
        if actual != patch:
            return None, f"package.json has sha256 {actual}; the patch version must be the sha256 of its bytes"
        try:
            document = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            return None, f"package.json is not JSON: {error}"
        official = schema_problems(PACKAGE, document)
        if official:
            return None, f"invalid package.json (schema {PACKAGE}): {'; '.join(official)}"
        try:
            validate_package(document)
        except ManifestError as error:
            return None, f"invalid package.json: {'; '.join(error.problems)}"
        node_package = document["nodePackage"]
        if node_package["name"] != package.name:
            return None, f"package.json names package {node_package['name']!r}, not {package.name!r}"
        if node_package["version"] != version:
            return None, f"package.json has version {node_package['version']!r}, registered as {version!r}"
        for asset in node_package.get("assets", []):
            for implementation in asset.get("implementations", []):
                if implementation["type"] == "system":
                    continue
                problem = self._check_implementation(package, implementation)
                if problem:
                    return None, f"asset {asset['name']}: {problem}"
        return document, None

    def _check_implementation(self, package: PackageRecord, implementation: dict[str, Any]) -> str | None:
        """The descriptor (schema, kind), then the asset (present, sha256-named, a container's entry inside)."""
        kind, entry = implementation["type"], None
        descriptor_uri = implementation.get("descriptorUri")
        if descriptor_uri is not None:
            data, problem = self._binary(package, descriptor_uri)
            if data is None:
                return problem
            try:
                descriptor = json.loads(data)
            except (UnicodeDecodeError, json.JSONDecodeError) as error:
                return f"descriptor {descriptor_uri} is not JSON: {error}"
            official = schema_problems(DESCRIPTOR, descriptor)
            if official:
                return f"invalid descriptor {descriptor_uri} (schema {DESCRIPTOR}): {'; '.join(official)}"
            try:
                validate_descriptor(descriptor)
            except ManifestError as error:
                return f"invalid descriptor {descriptor_uri}: {'; '.join(error.problems)}"
            expected = _DESCRIPTOR_OF.get(kind)
            if expected and expected not in descriptor:
                return f"descriptor {descriptor_uri} of a {kind} asset must hold {expected}"
            entry = (descriptor.get("runtimeDescriptor") or {}).get("entry", {}).get("name")
        data, problem = self._binary(package, implementation["assetUri"])
        if data is None:
            return problem
        if kind == "container":
            return _container_problem(implementation["assetUri"], data, entry)
        return None

    def _binary(self, package: PackageRecord, name: str) -> tuple[bytes | None, str | None]:
        """A binary of the package's storage location, if it is there and named by its sha256."""
        key = f"{package.storage['BinaryPrefixLocation']}/{name}"
        data = self.store.read(package.storage["Bucket"], key)
        if data is None:
            return None, f"{name} not found under the package's binary prefix (s3://{package.storage['Bucket']}/{key})"
        if hashlib.sha256(data).hexdigest() != name.split(".", 1)[0]:
            return None, f"{name} is not named by the sha256 of its content"
        return data, None

    def _version(self, package: PackageRecord, version: str, patch: str | None) -> VersionRecord:
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


def _container_problem(name: str, data: bytes, entry: str | None) -> str | None:
    """Why a container asset is not a filesystem tarball holding its entry file, or None.

    AWS's tooling makes it with ``docker export`` of a created container, gzipped; its members are
    paths without the leading ``/`` (``panorama/app.py``).
    """
    wanted = entry.lstrip("/") if entry else None
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as archive:
            for member in archive:
                path = member.name.removeprefix("./").lstrip("/")
                if wanted is not None and path == wanted and (member.isfile() or member.issym()):
                    return None
    except (tarfile.TarError, EOFError, OSError) as error:
        return f"{name} is not a container filesystem archive (a gzipped tar of docker export): {error}"
    if wanted is None:
        return None
    return f"{name} holds no {entry}, the entry its descriptor runs: not the application's container"
