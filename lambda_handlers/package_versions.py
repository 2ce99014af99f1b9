"""Register patch versions of a Panorama package and keep their number in check: one implementation, two callers.

The model package is registered by the pipeline's RegisterPackage step (``package_registration``),
the code package by ``panopipe package-app`` (``panopipe/code_package.py``). Both follow the one
sequence Panorama expects (:func:`register_version`): DescribePackage (``packageName/<name>``) or
CreatePackage → the asset and its descriptor to ``<BinaryPrefix>/<sha256>.<ext>`` (ACL
bucket-owner-full-control) → ``package.json`` to ``<ManifestPrefix>/<version>/<sha256 of it>.json``
→ RegisterPackageVersion (patch version = that sha256, marked latest); the caller then polls
:func:`registration_status` until REGISTER_COMPLETED. Identical bytes give the identical patch
version, so registering again is idempotent (ConflictException: the patch is adopted).

After a completed registration, :func:`record_and_trim` appends it to the package's history in the
artifacts bucket (Panorama has no ListPackageVersions) and deregisters the oldest patches beyond
the kept window (the service's quota is 20 versions per package), except those a device's last good
deployment pins, so a rollback can still restore them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

from lambda_handlers.artifacts import history_key, last_good_key, read_json, write_json
from lambda_handlers.aws import panorama
from lambda_handlers.errors import PackageRegistrationFailed
from lambda_handlers.state import PackageRef
from lambda_handlers.step import logger

OWNER_ACL: Literal["bucket-owner-full-control"] = "bucket-owner-full-control"
REGISTER_COMPLETED = "REGISTER_COMPLETED"
_CHUNK = 8 * 1024 * 1024


def canonical(document: dict[str, Any]) -> bytes:
    """The bytes we upload and hash: stable key order, compact."""
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode("utf-8")


def sha256_of_object(s3: S3Client, bucket: str, key: str) -> str:
    """Stream an S3 object through sha256 (models can be GBs; nothing is held in memory)."""
    digest = hashlib.sha256()
    body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    for chunk in body.iter_chunks(_CHUNK):
        digest.update(chunk)
    return digest.hexdigest()


def sha256_of_file(path: Path) -> str:
    """Stream a local file through sha256 (a container export is hundreds of MB)."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class Asset:
    """A package's binary (``<sha256>.tar.gz``): its digest, known before upload, and how to upload it."""

    sha256: str
    upload: Callable[[S3Client, str, str], None]  # (s3, bucket, key)


def object_asset(s3: S3Client, bucket: str, key: str) -> Asset:
    """An asset that is an S3 object (the raw model): hashed by streaming, uploaded by a managed copy.

    The managed copy is multipart (UploadPartCopy) above its threshold, so objects over 5 GB copy too.
    """

    def upload(client: S3Client, store: str, target: str) -> None:
        client.copy({"Bucket": bucket, "Key": key}, store, target, ExtraArgs={"ACL": OWNER_ACL})

    return Asset(sha256_of_object(s3, bucket, key), upload)


def file_asset(path: Path) -> Asset:
    """An asset that is a local file (the code container's export): a managed, multipart upload."""

    def upload(client: S3Client, store: str, target: str) -> None:
        client.upload_file(str(path), store, target, ExtraArgs={"ACL": OWNER_ACL})

    return Asset(sha256_of_file(path), upload)


@dataclass(frozen=True)
class Registration:
    """A registered (or found) patch version and the digests it was made of.

    ``found`` is the status of a patch that was registered before, when the caller asked to reuse
    it (nothing was uploaded); None when this call uploaded and registered it.
    """

    package_id: str
    package_name: str
    package_version: str
    patch_version: str
    asset_sha256: str
    descriptor_sha256: str
    found: str | None = None

    def ref(self) -> PackageRef:
        """How the run state and a graph name it."""
        return {
            "package_id": self.package_id,
            "package_name": self.package_name,
            "package_version": self.package_version,
            "patch_version": self.patch_version,
        }


def ensure_package(name: str) -> dict[str, Any]:
    """The package's id and storage location, creating the package on first use."""
    client = panorama.client()
    try:
        return dict(client.describe_package(PackageId=f"packageName/{name}"))
    except client.exceptions.ResourceNotFoundException:
        return dict(client.create_package(PackageName=name))


def register_version(
    s3: S3Client,
    package_name: str,
    package_version: str,
    asset: Asset,
    descriptor: dict[str, Any],
    package_json: Callable[[str, str], dict[str, Any]],
    *,
    reuse: bool = False,
) -> Registration:
    """Upload ``asset``, ``descriptor`` and the package.json ``package_json(asset sha, descriptor sha)``; register.

    With ``reuse``, a patch version that exists already (same bytes) is returned with its status
    and nothing is uploaded; without, the uploads are repeated and the service's ConflictException
    for an existing patch is taken as that patch (a retried step).
    """
    package = ensure_package(package_name)
    package_id, location = str(package["PackageId"]), package["StorageLocation"]
    store, binaries, manifests = (
        location["Bucket"],
        location["BinaryPrefixLocation"],
        location["ManifestPrefixLocation"],
    )
    descriptor_bytes = canonical(descriptor)
    descriptor_sha = hashlib.sha256(descriptor_bytes).hexdigest()
    manifest = canonical(package_json(asset.sha256, descriptor_sha))
    patch = hashlib.sha256(manifest).hexdigest()
    registration = Registration(package_id, package_name, package_version, patch, asset.sha256, descriptor_sha)
    if reuse and (status := _patch_status(package_id, package_version, patch)) is not None:
        return replace(registration, found=status)

    asset.upload(s3, store, f"{binaries}/{asset.sha256}.tar.gz")
    s3.put_object(Bucket=store, Key=f"{binaries}/{descriptor_sha}.json", Body=descriptor_bytes, ACL=OWNER_ACL)
    s3.put_object(Bucket=store, Key=f"{manifests}/{package_version}/{patch}.json", Body=manifest, ACL=OWNER_ACL)
    client = panorama.client()
    try:
        client.register_package_version(
            PackageId=package_id, PackageVersion=package_version, PatchVersion=patch, MarkLatest=True
        )
    except client.exceptions.ConflictException:
        # The identical patch (same bytes → same sha256) is already registered: a retried step, or the
        # same asset again. Adopt it if it exists; the caller's poll reads its status.
        if _patch_status(package_id, package_version, patch) is None:
            raise
        logger.info("patch version already registered: adopted", extra={"patch_version": patch})
    return registration


def _patch_status(package_id: str, version: str, patch: str) -> str | None:
    """The status of a registered patch version, or None when there is no such patch."""
    client = panorama.client()
    try:
        described = client.describe_package_version(PackageId=package_id, PackageVersion=version, PatchVersion=patch)
    except client.exceptions.ResourceNotFoundException:
        return None
    return str(described["Status"])


def registration_status(registration: PackageRef) -> str:
    """REGISTER_PENDING or REGISTER_COMPLETED; FAILED raises with the service's description."""
    described = panorama.client().describe_package_version(
        PackageId=registration["package_id"],
        PackageVersion=registration["package_version"],
        PatchVersion=registration["patch_version"],
    )
    if described["Status"] == "FAILED":
        raise PackageRegistrationFailed(
            f"package {registration['package_name']} {registration['package_version']} patch "
            f"{registration['patch_version']}: {described.get('StatusDescription', 'no description')}"
        )
    return str(described["Status"])


def latest_version(package_name: str, package_version: str) -> dict[str, Any] | None:
    """DescribePackageVersion of the latest patch of ``package_version`` (no PatchVersion), or None.

    None when the package does not exist or has no patch of that version registered.
    """
    client = panorama.client()
    try:
        package_id = client.describe_package(PackageId=f"packageName/{package_name}")["PackageId"]
        return dict(client.describe_package_version(PackageId=package_id, PackageVersion=package_version))
    except client.exceptions.ResourceNotFoundException:
        return None


def deregister_oldest(
    registration: PackageRef, history: list[dict[str, str]], keep: int, protected: frozenset[str] = frozenset()
) -> list[dict[str, str]]:
    """Deregister the oldest ``history`` entries ({package_version, patch_version}) beyond ``keep``.

    The current registration always stays; patch versions in ``protected`` (pinned by a device's
    last good deployment) are spared. A version already gone counts as removed; one the service
    refuses to remove (ConflictException, e.g. in use) stays for the next run. Returns the removed.
    """
    current = registration["patch_version"]
    others = [e for e in history if e["patch_version"] != current]
    beyond = others[: max(0, len(others) - (keep - 1))] if keep > 0 else others
    client = panorama.client()
    removed = []
    for entry in beyond:
        if entry["patch_version"] in protected:
            continue
        try:
            client.deregister_package_version(
                PackageId=registration["package_id"],
                PackageVersion=entry["package_version"],
                PatchVersion=entry["patch_version"],
            )
        except client.exceptions.ResourceNotFoundException:
            pass
        except client.exceptions.ConflictException as error:
            logger.warning("patch version not deregistered", extra={"entry": entry, "error": str(error)})
            continue
        removed.append(entry)
    return removed


def record_and_trim(
    s3: S3Client, bucket: str, registration: PackageRef, keep: int, devices: Sequence[str]
) -> list[str]:
    """Append the registration to the package's history once, deregister beyond the kept window.

    ``bucket`` is the artifacts bucket (history and last-good manifests), ``keep`` the config's
    ``runs.keep_package_versions``, ``devices`` the labels of the config's devices. Returns the
    deregistered patch versions.
    """
    key = history_key(registration["package_name"])
    stored = read_json(s3, bucket, key) or {}
    current = {"package_version": registration["package_version"], "patch_version": registration["patch_version"]}
    history = [e for e in stored.get("patches", []) if e != current] + [current]
    protected = frozenset(pinned_patches(s3, bucket, registration["package_name"], devices))
    removed = deregister_oldest(registration, history, keep, protected)
    history = [e for e in history if e not in removed]
    write_json(s3, bucket, key, {"package_name": registration["package_name"], "patches": history})
    return [e["patch_version"] for e in removed]


def pinned_patches(s3: S3Client, bucket: str, package_name: str, devices: Sequence[str]) -> list[str]:
    """Patch versions of ``package_name`` that a device's last good deployment runs.

    Read from the graph it deployed (every package's ``patchVersion``), and from its ``package``
    record (the model package; last-good files written before the graph pinned the code package).
    """
    pinned = []
    for device in devices:
        good = read_json(s3, bucket, last_good_key(device)) or {}
        package = good.get("package") or {}
        if package.get("package_name") == package_name and package.get("patch_version"):
            pinned.append(str(package["patch_version"]))
        pinned += _graph_pins(good.get("manifest"), package_name)
    return pinned


def _graph_pins(manifest: Any, package_name: str) -> list[str]:
    """The patch versions a deployed graph.json (``PayloadData`` text) pins for ``package_name``."""
    try:
        packages = json.loads(manifest)["nodeGraph"]["packages"]
    except (TypeError, ValueError, KeyError):
        return []
    return [
        str(p["patchVersion"])
        for p in packages
        if isinstance(p, dict) and str(p.get("name", "")).endswith(f"::{package_name}") and p.get("patchVersion")
    ]
