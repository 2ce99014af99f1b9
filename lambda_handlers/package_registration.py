"""Register a new patch version of the model package, then wait for Panorama to accept it.

DescribePackage (or CreatePackage) → copy the raw model and write its descriptor under the
package's storage location, named by their sha256 → write package.json under the manifest prefix
→ RegisterPackageVersion (patch version = sha256 of package.json, marked latest). The state machine
then polls DescribePackageVersion (:func:`registration_status`).

Steps: :func:`register_package` (state ``model`` → section ``package``) and
:func:`check_registration` (one poll; on REGISTER_COMPLETED, old patch versions beyond the kept
window are deregistered, except those a device's last good deployment runs, so a rollback can
still restore them). Environment: ARTIFACTS_BUCKET, MANIFEST_TEMPLATE_KEY, STEP_SETTINGS.

The objects it reads and writes in the artifacts bucket are described in ``artifacts.py``.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

from lambda_handlers import settings
from lambda_handlers.artifacts import (
    history_key,
    last_good_key,
    load_template,
    model_spec,
    read_json,
    split_s3_uri,
    write_json,
)
from lambda_handlers.aws import clients, panorama
from lambda_handlers.errors import PackageRegistrationFailed, StepTimedOut
from lambda_handlers.state import (
    IN_PROGRESS,
    SUCCEEDED,
    PackageSection,
    PackageVersion,
    RunState,
    loop_started,
    past,
    polled,
)
from lambda_handlers.step import logger, step
from panorama_app.manifest import documents
from panorama_app.manifest.spec import ApplicationSpec

OWNER_ACL: Literal["bucket-owner-full-control"] = "bucket-owner-full-control"
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


def ensure_package(name: str) -> dict[str, Any]:
    """The package's id and storage location, creating the package on first use."""
    client = panorama.client()
    try:
        return dict(client.describe_package(PackageId=f"packageName/{name}"))
    except client.exceptions.ResourceNotFoundException:
        return dict(client.create_package(PackageName=name))


def register_model(s3: S3Client, spec: ApplicationSpec, model_bucket: str, model_key: str) -> PackageVersion:
    """Upload the raw model, its descriptor and package.json, then register the patch version."""
    package = ensure_package(spec.model_package)
    location = package["StorageLocation"]
    store, binaries, manifests = (
        location["Bucket"],
        location["BinaryPrefixLocation"],
        location["ManifestPrefixLocation"],
    )

    model_sha = sha256_of_object(s3, model_bucket, model_key)
    # A managed copy: multipart (UploadPartCopy) above the threshold, so models over 5 GB copy too.
    s3.copy(
        {"Bucket": model_bucket, "Key": model_key},
        store,
        f"{binaries}/{model_sha}.tar.gz",
        ExtraArgs={"ACL": OWNER_ACL},
    )
    descriptor = canonical(documents.model_descriptor(spec))
    descriptor_sha = hashlib.sha256(descriptor).hexdigest()
    s3.put_object(Bucket=store, Key=f"{binaries}/{descriptor_sha}.json", Body=descriptor, ACL=OWNER_ACL)

    manifest = canonical(documents.model_package(spec, model_sha, descriptor_sha))
    patch = hashlib.sha256(manifest).hexdigest()
    s3.put_object(Bucket=store, Key=f"{manifests}/{spec.package_version}/{patch}.json", Body=manifest, ACL=OWNER_ACL)
    client = panorama.client()
    try:
        client.register_package_version(
            PackageId=package["PackageId"], PackageVersion=spec.package_version, PatchVersion=patch, MarkLatest=True
        )
    except client.exceptions.ConflictException:
        # The identical patch (same bytes → same sha256) is already registered: a retried step, or the
        # same model again. Adopt it if it exists; the check step reads its status.
        if not _patch_exists(package["PackageId"], spec.package_version, patch):
            raise
        logger.info("patch version already registered: adopted", extra={"patch_version": patch})
    return {
        "package_id": package["PackageId"],
        "package_name": spec.model_package,
        "package_version": spec.package_version,
        "patch_version": patch,
        "model_sha256": model_sha,
        "descriptor_sha256": descriptor_sha,
    }


def _patch_exists(package_id: str, version: str, patch: str) -> bool:
    client = panorama.client()
    try:
        client.describe_package_version(PackageId=package_id, PackageVersion=version, PatchVersion=patch)
    except client.exceptions.ResourceNotFoundException:
        return False
    return True


def registration_status(registration: PackageVersion) -> str:
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


def deregister_oldest(
    registration: PackageSection, history: list[dict[str, str]], keep: int, protected: frozenset[str] = frozenset()
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


# --- step handlers ----------------------------------------------------------------------------------


@step
def register_package(state: RunState) -> RunState:
    """Register the run's raw model (``state["model"]``) as a new patch version; start the wait loop."""
    s3, bucket = clients.s3(), settings.env(settings.ARTIFACTS_BUCKET)
    template = load_template(s3, bucket, settings.env(settings.MANIFEST_TEMPLATE_KEY))
    spec = model_spec(template.spec, state["model"])
    model_bucket, model_key = split_s3_uri(state["model"]["s3_uri"])
    registration = register_model(s3, spec, model_bucket, model_key)
    timeout = settings.current().runs.registration_timeout_seconds
    return loop_started(state, "package", timeout, **registration, deregistered=[])


@step
def check_registration(state: RunState) -> RunState:
    """One poll of the registration: SUCCEEDED (then trim old patch versions) or IN_PROGRESS.

    Raises PackageRegistrationFailed (FAILED, or the version is being deleted) and StepTimedOut.
    """
    package = state["package"]
    status = registration_status(package)
    if status == "REGISTER_COMPLETED":
        return polled(state, "package", SUCCEEDED, deregistered=record_and_trim(package))
    what = f"package {package['package_name']} {package['package_version']} patch {package['patch_version']}"
    if status != "REGISTER_PENDING":
        raise PackageRegistrationFailed(f"{what}: status {status}")
    if past(int(package["deadline"])):
        timeout = settings.current().runs.registration_timeout_seconds
        raise StepTimedOut(f"{what}: still {status} after {timeout} s")
    return polled(state, "package", IN_PROGRESS)


def record_and_trim(registration: PackageSection) -> list[str]:
    """Append the registration to the package's history once, deregister beyond the kept window.

    Returns the deregistered patch versions.
    """
    s3, bucket = clients.s3(), settings.env(settings.ARTIFACTS_BUCKET)
    key = history_key(registration["package_name"])
    stored = read_json(s3, bucket, key) or {}
    current = {"package_version": registration["package_version"], "patch_version": registration["patch_version"]}
    history = [e for e in stored.get("patches", []) if e != current] + [current]
    protected = frozenset(_pinned_patches(s3, bucket, registration["package_name"]))
    removed = deregister_oldest(registration, history, settings.current().runs.keep_package_versions, protected)
    history = [e for e in history if e not in removed]
    write_json(s3, bucket, key, {"package_name": registration["package_name"], "patches": history})
    return [e["patch_version"] for e in removed]


def _pinned_patches(s3: S3Client, bucket: str, package_name: str) -> list[str]:
    """Patch versions of ``package_name`` that a device's last good deployment runs."""
    pinned = []
    for device in settings.current().devices:
        good = read_json(s3, bucket, last_good_key(device.label)) or {}
        package = good.get("package") or {}
        if package.get("package_name") == package_name and package.get("patch_version"):
            pinned.append(str(package["patch_version"]))
    return pinned
