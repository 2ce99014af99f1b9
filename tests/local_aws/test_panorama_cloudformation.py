"""``AWS::Panorama::Package`` through moto's CloudFormation, with the local Panorama service on moto's port."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from lambda_handlers.aws import panorama
from local_aws.emulator import Emulator
from local_aws.panorama_backend import PanoramaBackend

ACCOUNT, REGION = "123456789012", "us-east-1"
ATTRIBUTES = (
    "PackageId",
    "Arn",
    "CreatedTime",
    "StorageLocation.Bucket",
    "StorageLocation.RepoPrefixLocation",
    "StorageLocation.GeneratedPrefixLocation",
    "StorageLocation.BinaryPrefixLocation",
    "StorageLocation.ManifestPrefixLocation",
)


def _template(tags: dict[str, str]) -> str:
    outputs: dict[str, Any] = {"Ref": {"Value": {"Ref": "ModelPackage"}}}
    for attribute in ATTRIBUTES:
        outputs[attribute.replace(".", "")] = {"Value": {"Fn::GetAtt": ["ModelPackage", attribute]}}
    return json.dumps(
        {
            "Resources": {
                "ModelPackage": {
                    "Type": "AWS::Panorama::Package",
                    "Properties": {
                        "PackageName": "stack_model",
                        "Tags": [{"Key": k, "Value": v} for k, v in tags.items()],
                    },
                }
            },
            "Outputs": outputs,
        }
    )


@pytest.fixture
def backend(monkeypatch: pytest.MonkeyPatch) -> Iterator[PanoramaBackend]:
    backend = PanoramaBackend(ACCOUNT, REGION)
    with Emulator(panorama=backend) as aws:
        for name, value in aws.env().items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("AWS_PROFILE", raising=False)
        yield backend


def test_a_stack_creates_updates_and_deletes_a_panorama_package(backend: PanoramaBackend) -> None:
    cloudformation = boto3.Session(region_name=REGION).client("cloudformation")
    pano = panorama.new_client(REGION)
    cloudformation.create_stack(StackName="packages", TemplateBody=_template({"team": "vision"}))

    stack = cloudformation.describe_stacks(StackName="packages")["Stacks"][0]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack["Outputs"]}
    package_id = outputs["Ref"]
    described = pano.describe_package(PackageId=package_id)
    location = described["StorageLocation"]
    assert outputs["PackageId"] == package_id and package_id.startswith("package-")
    assert outputs["Arn"] == described["Arn"] == f"arn:aws:panorama:{REGION}:{ACCOUNT}:package/{package_id}"
    assert int(outputs["CreatedTime"]) == int(described["CreatedTime"].timestamp())
    for part in (
        "Bucket",
        "RepoPrefixLocation",
        "GeneratedPrefixLocation",
        "BinaryPrefixLocation",
        "ManifestPrefixLocation",
    ):
        assert outputs[f"StorageLocation{part}"] == location[part]
    assert described["PackageName"] == "stack_model" and described["Tags"] == {"team": "vision"}
    assert pano.describe_package(PackageId="packageName/stack_model")["PackageId"] == package_id

    cloudformation.update_stack(StackName="packages", TemplateBody=_template({"team": "edge"}))
    assert pano.describe_package(PackageId=package_id)["Tags"] == {"team": "edge"}

    cloudformation.delete_stack(StackName="packages")
    with pytest.raises(pano.exceptions.ResourceNotFoundException):
        pano.describe_package(PackageId=package_id)
