"""Model package registration: S3 through moto, Panorama through a Stubber on the carried model."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber
from moto import mock_aws

from lambda_handlers import package_registration as reg
from lambda_handlers.aws import panorama
from panopipe.application import application_spec
from panopipe.config import load_config
from tests.conftest import ROOT

ARTIFACTS = "aws-panorama-panopipe-dev-artifacts-123456789012-us-east-1"
STORE = "panorama-storage-bucket"
MODEL = b"raw model bytes" * 1000
LOCATION = {
    "Bucket": STORE,
    "BinaryPrefixLocation": "123456789012/nodePackages/pkg-1/binaries",
    "ManifestPrefixLocation": "123456789012/nodePackages/pkg-1/manifests",
    "GeneratedPrefixLocation": "123456789012/nodePackages/pkg-1/generated",
    "RepoPrefixLocation": "123456789012/nodePackages/pkg-1/repo",
}
SPEC = application_spec(load_config(ROOT / "config" / "dev.yaml", base_dir=ROOT))


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        for bucket in (ARTIFACTS, STORE):
            client.create_bucket(Bucket=bucket)
        client.put_object(Bucket=ARTIFACTS, Key="runs/r1/output/model.tar.gz", Body=MODEL)
        yield client


@pytest.fixture
def stub() -> Iterator[Stubber]:
    client = panorama.new_client("us-east-1")
    with Stubber(client) as stubber:
        panorama.use_client(client)
        yield stubber
        stubber.assert_no_pending_responses()
    panorama.use_client(None)


def test_new_package_is_created_then_the_version_registered(s3: Any, stub: Stubber) -> None:
    stub.add_client_error(
        "describe_package",
        "ResourceNotFoundException",
        http_status_code=404,
        expected_params={"PackageId": f"packageName/{SPEC.model_package}"},
    )
    stub.add_response(
        "create_package",
        {
            "PackageId": "pkg-1",
            "Arn": "arn:aws:panorama:us-east-1:123456789012:package/pkg-1",
            "StorageLocation": LOCATION,
        },
        {"PackageName": SPEC.model_package},
    )
    stub.add_response(
        "register_package_version",
        {},
        {"PackageId": "pkg-1", "PackageVersion": "1.0", "PatchVersion": ANY, "MarkLatest": True},
    )
    registration = reg.register_model(s3, SPEC, ARTIFACTS, "runs/r1/output/model.tar.gz")

    model_sha = hashlib.sha256(MODEL).hexdigest()
    assert registration.model_sha256 == model_sha
    binaries = LOCATION["BinaryPrefixLocation"]
    assert s3.get_object(Bucket=STORE, Key=f"{binaries}/{model_sha}.tar.gz")["Body"].read() == MODEL
    descriptor = s3.get_object(Bucket=STORE, Key=f"{binaries}/{registration.descriptor_sha256}.json")["Body"].read()
    assert hashlib.sha256(descriptor).hexdigest() == registration.descriptor_sha256
    assert json.loads(descriptor)["mlModelDescriptor"]["inputs"] == [{"name": "data", "shape": [1, 3, 224, 224]}]
    key = f"{LOCATION['ManifestPrefixLocation']}/1.0/{registration.patch_version}.json"
    manifest = s3.get_object(Bucket=STORE, Key=key)["Body"].read()
    assert hashlib.sha256(manifest).hexdigest() == registration.patch_version
    implementation = json.loads(manifest)["nodePackage"]["assets"][0]["implementations"][0]
    assert implementation["assetUri"] == f"{model_sha}.tar.gz"


def test_existing_package_is_reused_and_registering_the_same_model_is_idempotent(s3: Any, stub: Stubber) -> None:
    described = {
        "Arn": "arn:aws:panorama:us-east-1:123456789012:package/pkg-1",
        "CreatedTime": "2026-01-01T00:00:00Z",
        "PackageId": "pkg-1",
        "PackageName": SPEC.model_package,
        "StorageLocation": LOCATION,
        "Tags": {},
    }
    patches = []
    for _ in range(2):
        stub.add_response("describe_package", described, {"PackageId": f"packageName/{SPEC.model_package}"})
        stub.add_response(
            "register_package_version",
            {},
            {"PackageId": "pkg-1", "PackageVersion": "1.0", "PatchVersion": ANY, "MarkLatest": True},
        )
    for _ in range(2):
        patches.append(reg.register_model(s3, SPEC, ARTIFACTS, "runs/r1/output/model.tar.gz").patch_version)
    assert patches[0] == patches[1], "same model and spec give the same patch version"


def _described(status: str, description: str | None = None) -> dict[str, Any]:
    response = {
        "IsLatestPatch": True,
        "PackageId": "pkg-1",
        "PackageName": SPEC.model_package,
        "PackageVersion": "1.0",
        "PatchVersion": "abc",
        "Status": status,
    }
    if description:
        response["StatusDescription"] = description
    return response


REGISTRATION = {
    "package_id": "pkg-1",
    "package_name": SPEC.model_package,
    "package_version": "1.0",
    "patch_version": "abc",
}


def test_status_polling(stub: Stubber) -> None:
    params = {"PackageId": "pkg-1", "PackageVersion": "1.0", "PatchVersion": "abc"}
    stub.add_response("describe_package_version", _described("REGISTER_PENDING"), params)
    stub.add_response("describe_package_version", _described("REGISTER_COMPLETED"), params)
    assert reg.registration_status(REGISTRATION) == "REGISTER_PENDING"
    assert reg.registration_status(REGISTRATION) == "REGISTER_COMPLETED"


def test_failed_registration_raises_with_the_service_description(stub: Stubber) -> None:
    stub.add_response("describe_package_version", _described("FAILED", "Invalid descriptor: unsupported framework"))
    with pytest.raises(reg.PackageRegistrationFailed, match="patch abc: Invalid descriptor: unsupported framework"):
        reg.registration_status(REGISTRATION)


def test_old_patch_versions_beyond_the_window_are_deregistered(stub: Stubber) -> None:
    history = ["p1", "p2", "p3", "p4", "abc"]
    for patch in ("p1", "p2"):
        stub.add_response(
            "deregister_package_version", {}, {"PackageId": "pkg-1", "PackageVersion": "1.0", "PatchVersion": patch}
        )
    assert reg.deregister_beyond(REGISTRATION, history, keep=3) == ["p1", "p2"]


def test_stubber_rejects_a_request_the_real_api_would_reject() -> None:
    """The carried model is the contract: a wrong parameter fails before any response is used."""
    client = panorama.new_client("us-east-1")
    with Stubber(client) as stubber, pytest.raises(Exception, match=r"Unknown parameter|Parameter validation failed"):
        stubber.add_response("register_package_version", {})
        client.register_package_version(PackageId="pkg-1", PackageVersion="1.0", PatchVersion="abc", Latest=True)
