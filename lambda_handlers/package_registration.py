"""Register a new patch version of the model package (DESIGN.md §3, "API sequence").

DescribePackage (or CreatePackage) → copy the raw model and write its descriptor under the
package's storage location, named by their sha256 → write package.json under the manifest prefix
→ RegisterPackageVersion (patch version = sha256 of package.json, marked latest). The state machine
then polls DescribePackageVersion (:func:`registration_status`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

from lambda_handlers.aws import panorama
from lambda_handlers.errors import PackageRegistrationFailed
from panorama_app.manifest import documents
from panorama_app.manifest.spec import ApplicationSpec

OWNER_ACL = "bucket-owner-full-control"
_CHUNK = 8 * 1024 * 1024


@dataclass(frozen=True)
class Registration:
    """What the next steps need: where the version is, and how to pin it in the graph."""

    package_id: str
    package_name: str
    package_version: str
    patch_version: str
    model_sha256: str
    descriptor_sha256: str

    def as_dict(self) -> dict[str, str]:
        """JSON-ready form for the state machine's payload."""
        return asdict(self)


def canonical(document: dict[str, Any]) -> bytes:
    """The bytes we upload and hash: stable key order, compact."""
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode("utf-8")


def sha256_of_object(s3: Any, bucket: str, key: str) -> str:
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
        return client.describe_package(PackageId=f"packageName/{name}")  # type: ignore[no-any-return]
    except client.exceptions.ResourceNotFoundException:
        return client.create_package(PackageName=name)  # type: ignore[no-any-return]


def register_model(s3: Any, spec: ApplicationSpec, model_bucket: str, model_key: str) -> Registration:
    """Upload the raw model, its descriptor and package.json, then register the patch version."""
    package = ensure_package(spec.model_package)
    location = package["StorageLocation"]
    store, binaries, manifests = (
        location["Bucket"],
        location["BinaryPrefixLocation"],
        location["ManifestPrefixLocation"],
    )

    model_sha = sha256_of_object(s3, model_bucket, model_key)
    s3.copy_object(
        Bucket=store,
        Key=f"{binaries}/{model_sha}.tar.gz",
        CopySource={"Bucket": model_bucket, "Key": model_key},
        ACL=OWNER_ACL,
    )
    descriptor = canonical(documents.model_descriptor(spec))
    descriptor_sha = hashlib.sha256(descriptor).hexdigest()
    s3.put_object(Bucket=store, Key=f"{binaries}/{descriptor_sha}.json", Body=descriptor, ACL=OWNER_ACL)

    manifest = canonical(documents.model_package(spec, model_sha, descriptor_sha))
    patch = hashlib.sha256(manifest).hexdigest()
    s3.put_object(Bucket=store, Key=f"{manifests}/{spec.package_version}/{patch}.json", Body=manifest, ACL=OWNER_ACL)
    panorama.client().register_package_version(
        PackageId=package["PackageId"], PackageVersion=spec.package_version, PatchVersion=patch, MarkLatest=True
    )
    return Registration(
        package["PackageId"], spec.model_package, spec.package_version, patch, model_sha, descriptor_sha
    )


def registration_status(registration: dict[str, str]) -> str:
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


def deregister_beyond(registration: dict[str, str], history: list[str], keep: int) -> list[str]:
    """Deregister the oldest patch versions so that at most ``keep`` remain (quota: 20 per package).

    Panorama has no ListPackageVersions: ``history`` is the pipeline's own record of registered
    patch versions, oldest first, kept in the artifacts bucket. Returns the patches removed.
    """
    current = registration["patch_version"]
    kept = [p for p in history if p != current][-(keep - 1) :] if keep > 1 else []
    removed = [p for p in history if p != current and p not in kept]
    for patch in removed:
        panorama.client().deregister_package_version(
            PackageId=registration["package_id"],
            PackageVersion=registration["package_version"],
            PatchVersion=patch,
        )
    return removed
