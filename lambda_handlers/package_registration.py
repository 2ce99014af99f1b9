"""Register a new patch version of the model package, then wait for Panorama to accept it.

The raw model (the run's ``model.s3_uri``, copied as it is: Panorama compiles it at deployment) and
its descriptor go through the registration that the code package shares
(:func:`lambda_handlers.package_versions.register_version`): uploaded under the package's storage
location named by their sha256, package.json under the manifest prefix, RegisterPackageVersion
(patch version = sha256 of package.json, marked latest). The state machine then polls
DescribePackageVersion.

Steps: :func:`register_package` (state ``model`` → section ``package``) and
:func:`check_registration` (one poll; on REGISTER_COMPLETED, old patch versions beyond the kept
window are deregistered, except those a device's last good deployment runs, so a rollback can
still restore them). Environment: ARTIFACTS_BUCKET, MANIFEST_TEMPLATE_KEY, STEP_SETTINGS.

The objects it reads and writes in the artifacts bucket are described in ``artifacts.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

from lambda_handlers import deployment_lock, package_versions, settings
from lambda_handlers.artifacts import load_template, model_spec, split_s3_uri
from lambda_handlers.aws import clients
from lambda_handlers.errors import PackageRegistrationFailed, StepTimedOut
from lambda_handlers.package_versions import registration_status
from lambda_handlers.state import (
    IN_PROGRESS,
    SUCCEEDED,
    PackageRef,
    PackageVersion,
    RunState,
    loop_started,
    past,
    polled,
)
from lambda_handlers.step import step
from panorama_app.manifest import documents
from panorama_app.manifest.spec import ApplicationSpec


def register_model(s3: S3Client, spec: ApplicationSpec, model_bucket: str, model_key: str) -> PackageVersion:
    """Upload the raw model, its descriptor and package.json, then register the patch version."""
    registration = package_versions.register_version(
        s3,
        spec.model_package,
        spec.package_version,
        package_versions.object_asset(s3, model_bucket, model_key),
        documents.model_descriptor(spec),
        lambda asset_sha, descriptor_sha: documents.model_package(spec, asset_sha, descriptor_sha),
    )
    return {
        **registration.ref(),
        "model_sha256": registration.asset_sha256,
        "descriptor_sha256": registration.descriptor_sha256,
    }


# --- step handlers ----------------------------------------------------------------------------------


@step
def register_package(state: RunState) -> RunState:
    """Register the run's raw model (``state["model"]``) as a new patch version; start the wait loop."""
    deployment_lock.renew(state)
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
    deployment_lock.renew(state)
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


def record_and_trim(registration: PackageRef) -> list[str]:
    """Append the registration to the package's history once, deregister beyond the kept window.

    Returns the deregistered patch versions.
    """
    config = settings.current()
    return package_versions.record_and_trim(
        clients.s3(),
        settings.env(settings.ARTIFACTS_BUCKET),
        registration,
        config.runs.keep_package_versions,
        [device.label for device in config.devices],
    )
