"""Steps RegisterPackage and CheckRegistration (``lambda_handlers/package_registration.py``)."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Stack

from lambda_handlers import package_registration, settings
from stacks.steps.step_spec import (
    ANY_PACKAGE,
    Allow,
    Permission,
    StepResources,
    StepSpec,
    hold_lock,
    list_artifacts,
    read_models,
    write_encrypted,
    write_package_storage,
)


def _packages(r: StepResources) -> str:
    return r.arn("panorama", "package")


def _register(r: StepResources) -> Sequence[Permission]:
    return (
        read_models(r),
        list_artifacts(r),
        hold_lock(r),
        write_encrypted(r),  # the lock's lease (the key also decrypts the model)
        Allow(
            "RegisterPackageVersion",
            ("panorama:DescribePackage", "panorama:RegisterPackageVersion", "panorama:DescribePackageVersion"),
            (_packages(r),),
            ANY_PACKAGE,
        ),
        Allow(
            "CreatePackage",
            ("panorama:CreatePackage",),
            ("*",),
            "panorama:CreatePackage has no resource-level permission (Service Authorization Reference)",
        ),
        write_package_storage(Stack.of(r.scope)),
    )


REGISTER_PACKAGE = StepSpec(
    handler=package_registration.register_package,
    description="Uploads the raw model and registers a Panorama package version",
    variables=(
        settings.ARTIFACTS_BUCKET,
        settings.MANIFEST_TEMPLATE_KEY,
        settings.MODEL_PACKAGE_NAME,
        settings.CODE_PACKAGE_NAME,
    ),
    permissions=_register,
    timeout_seconds=900,  # hashes and copies the raw model (can be GBs)
    memory=1024,
)


def _check(r: StepResources) -> Sequence[Permission]:
    return (
        list_artifacts(r),
        hold_lock(r),
        Allow(
            "PollAndTrimPackageVersions",
            ("panorama:DescribePackageVersion", "panorama:DeregisterPackageVersion"),
            (_packages(r),),
            ANY_PACKAGE,
        ),
        Allow(
            "ReadLastGoodPins",
            ("s3:GetObject",),
            (r.artifacts.arn_for_objects("deployments/*"),),
            "patch versions that a device's last-good manifest pins are never deregistered (one object per device)",
        ),
        Allow(
            "PackageHistory",
            ("s3:GetObject", "s3:PutObject"),
            (r.artifacts.arn_for_objects("panorama/package-history/*"),),
            "one history object per package under this prefix of the artifacts bucket",
        ),
        write_encrypted(r),
    )


CHECK_REGISTRATION = StepSpec(
    handler=package_registration.check_registration,
    description="Polls the package version; deregisters versions beyond the kept window",
    variables=(settings.ARTIFACTS_BUCKET,),
    permissions=_check,
)
