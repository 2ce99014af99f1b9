"""The application stack: Panorama packages, the stored manifest template, the runtime role's output."""

from __future__ import annotations

import json
from typing import Any

import pytest

from panorama_app.manifest.validation import validate_graph, validate_overrides
from tests.conftest import STAGE_CONFIGS, Synthesized


def _one(synthesized: Synthesized, stage: str, type_: str) -> dict[str, Any]:
    (resource,) = synthesized.resources(stage, "Application", type_).values()
    return resource


def test_packages_are_named_per_project_and_environment(synthesized: Synthesized) -> None:
    packages = synthesized.resources("example", "Application", "AWS::Panorama::Package")
    names = sorted(p["Properties"]["PackageName"] for p in packages.values())
    assert names == ["panopipe_prod_app", "panopipe_prod_people_classifier"]


@pytest.mark.parametrize("stage", sorted(STAGE_CONFIGS))
def test_no_application_instance_resource(synthesized: Synthesized, stage: str) -> None:
    """The pipeline creates and replaces instances; CloudFormation would replace them on any change."""
    for _, _, template in synthesized.all_templates():
        assert not [r for r in template["Resources"].values() if r["Type"] == "AWS::Panorama::ApplicationInstance"]


def test_outputs_reach_the_pipeline(synthesized: Synthesized) -> None:
    outputs = synthesized.template("example", "Application")["Outputs"]
    assert outputs["ModelPackageName"]["Value"] == "panopipe_prod_people_classifier"
    assert outputs["CodePackageId"]["Value"] == {"Fn::GetAtt": ["ApplicationCodePackageAFFBCE09", "PackageId"]}
    assert outputs["ManifestTemplateKey"]["Value"] == "panorama/application-manifest.json"
    assert outputs["RuntimeRoleArn"]["Value"] == {"Fn::GetAtt": ["PanoramaRuntimeRole992472C7", "Arn"]}
    assert "NotificationTopicArn" in synthesized.template("example", "Pipeline")["Outputs"]


def test_manifest_template_is_stored_with_the_account_filled_at_deploy_time(synthesized: Synthesized) -> None:
    resource = _one(synthesized, "example", "Custom::PanoramaManifestTemplate")
    props = resource["Properties"]
    assert props["Key"] == "panorama/application-manifest.json"
    assert props["Bucket"] == "aws-panorama-panopipe-prod-artifacts-123456789012-us-west-2"
    body = props["Body"]["Fn::Sub"]
    assert "123456789012" not in body.replace("aws-panorama-panopipe-prod", "")  # no account id committed
    document = json.loads(body.replace("${AWS::AccountId}", "111122223333"))
    assert set(document) == {"spec", "graph", "overrides"}
    validate_graph(document["graph"], account_id="111122223333")
    validate_overrides(document["overrides"], document["graph"])
    assert document["spec"]["cameras"] == ["dock_door_camera", "aisle_camera"]


def test_template_writer_is_a_python_function_with_its_own_narrow_role(synthesized: Synthesized) -> None:
    function = _one(synthesized, "dev", "AWS::Lambda::Function")["Properties"]
    assert function["Runtime"] == "python3.14"
    assert function["Handler"] == "lambda_handlers.manifest_template.on_event"
    assert function["TracingConfig"] == {"Mode": "Active"}
    policies = synthesized.resources("dev", "Application", "AWS::IAM::Policy")
    (policy,) = [p for k, p in policies.items() if k.startswith("ApplicationTemplateWriterRole")]
    statements = policy["Properties"]["PolicyDocument"]["Statement"]
    s3 = next(s for s in statements if "s3:PutObject" in s["Action"])
    assert s3["Resource"]["Fn::Join"][1][-1] == "/panorama/application-manifest.json"
    stars = [s["Action"] for s in statements if s["Resource"] == "*"]
    assert stars == [["xray:PutTelemetryRecords", "xray:PutTraceSegments"]], "only active tracing's X-Ray writes"
    assert not [
        r
        for r in synthesized.resources("dev", "Application").values()
        if r["Type"].startswith("Custom::") and r["Type"] != "Custom::PanoramaManifestTemplate"
    ]
