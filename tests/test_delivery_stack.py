"""The delivery stack (CDK Pipelines) built from config/delivery.example.yaml in the session synth."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from syrupy.assertion import SnapshotAssertion
from syrupy.extensions.json import JSONSnapshotExtension

from stacks.delivery import commands
from tests.conftest import DELIVERY, ROOT, Synthesized, mask_asset_hashes

DEV, PROD = f"{DELIVERY}-dev", f"{DELIVERY}-prod"


def _pipeline(synthesized: Synthesized) -> dict[str, Any]:
    (pipeline,) = synthesized.resources(DELIVERY, "Delivery", "AWS::CodePipeline::Pipeline").values()
    return dict(pipeline["Properties"])


def _actions(synthesized: Synthesized) -> dict[str, dict[str, Any]]:
    return {a["Name"]: a for stage in _pipeline(synthesized)["Stages"] for a in stage["Actions"]}


def _project(synthesized: Synthesized, action: str) -> dict[str, Any]:
    logical_id = _actions(synthesized)[action]["Configuration"]["ProjectName"]["Ref"]
    return dict(synthesized.template(DELIVERY, "Delivery")["Resources"][logical_id]["Properties"])


def _buildspec(project: dict[str, Any]) -> dict[str, Any]:
    spec = project["Source"]["BuildSpec"]
    if isinstance(spec, dict):  # Fn::Join around a bucket name
        spec = "".join(p if isinstance(p, str) else "<ref>" for p in spec["Fn::Join"][1])
    return dict(json.loads(spec))


def _role_statements(synthesized: Synthesized, stage: str, stack: str, role_name: str) -> list[dict[str, Any]]:
    resources = synthesized.template(stage, stack)["Resources"]
    (role_id,) = [
        k
        for k, v in resources.items()
        if v["Type"] == "AWS::IAM::Role" and v["Properties"].get("RoleName") == role_name
    ]
    return [
        s
        for v in resources.values()
        if v["Type"] == "AWS::IAM::Policy" and {"Ref": role_id} in v["Properties"]["Roles"]
        for s in v["Properties"]["PolicyDocument"]["Statement"]
    ]


def readme_test_command() -> str:
    """The second of the README's two commands (``<command>    # the whole test suite…``)."""
    commands_block = re.search(r"\n\n((?:    \S.*\n)+)", (ROOT / "README.md").read_text())
    assert commands_block, "the README starts with an indented block of its two commands"
    lines = [line.split("#")[0].strip() for line in commands_block.group(1).splitlines()]
    assert len(lines) == 2
    return lines[1]


def test_stages_run_in_the_configured_order_with_approval_before_prod(synthesized: Synthesized) -> None:
    stages = [
        (s["Name"], [a["Name"] for a in sorted(s["Actions"], key=lambda a: a["RunOrder"])])
        for s in _pipeline(synthesized)["Stages"]
    ]
    assert [name for name, _ in stages] == [
        "Source",
        "Build",
        "UpdatePipeline",
        "Assets",
        "CodePackage",
        "panopipe-dev",
        "panopipe-prod",
    ]
    dev, prod = dict(stages)["panopipe-dev"], dict(stages)["panopipe-prod"]
    assert "Approve-prod" not in dev and not any(a.startswith("Approve") for a in dev)
    assert prod[0] == "Approve-prod"
    for actions, env in ((dev, "dev"), (prod, "prod")):
        assert actions[-2:] == [f"RegisterCodePackage-{env}", f"Verify-{env}"]
        assert {"storage.Deploy", "application.Deploy", "pipeline.Deploy", "delivery-access.Deploy"} <= set(actions)
    approval = _actions(synthesized)["Approve-prod"]
    assert approval["ActionTypeId"]["Category"] == "Approval"
    assert approval["Configuration"]["CustomData"] == "Deploy panopipe-prod to account 123456789012 (us-west-2)?"


def test_the_synth_step_runs_the_readmes_test_command_then_synth(synthesized: Synthesized) -> None:
    assert readme_test_command() == commands.TEST_COMMAND
    spec = _buildspec(_project(synthesized, "Synth"))
    assert spec["phases"]["build"]["commands"] == [
        readme_test_command(),
        "make delivery-synth DELIVERY=config/delivery.example.yaml",
    ]
    assert spec["artifacts"]["base-directory"] == "cdk.out"
    makefile = (ROOT / "Makefile").read_text()
    assert "delivery-synth: deps" in makefile and "cdk synth --quiet --no-notices -c delivery=$(DELIVERY)" in makefile


def test_source_self_mutation_and_encrypted_cross_account_artifacts(synthesized: Synthesized) -> None:
    pipeline = _pipeline(synthesized)
    source = _actions(synthesized)["my-org_panorama-pipeline"]
    assert source["ActionTypeId"]["Provider"] == "CodeStarSourceConnection"
    assert source["Configuration"]["FullRepositoryId"] == "my-org/panorama-pipeline"
    assert source["Configuration"]["BranchName"] == "main"
    assert source["Configuration"]["ConnectionArn"].startswith("arn:aws:codeconnections:us-west-2:111111111111:")
    store = pipeline["ArtifactStore"]
    assert store["EncryptionKey"]["Type"] == "KMS"
    mutation = _buildspec(_project(synthesized, "SelfMutate"))
    assert mutation["phases"]["install"]["commands"] == ["npm install -g aws-cdk@2.1148.1"]
    keys = synthesized.resources(DELIVERY, "Delivery", "AWS::KMS::Key")
    assert [k["Properties"]["EnableKeyRotation"] for k in keys.values()] == [True]
    assert synthesized.stacks[f"{DELIVERY}/Delivery"]["stack_name"] == "Delivery"


@pytest.mark.parametrize(
    ("action", "image", "compute", "privileged"),
    [
        ("Synth", "aws/codebuild/standard:7.0", "BUILD_GENERAL1_MEDIUM", False),
        ("BuildCodePackage", "aws/codebuild/amazonlinux-aarch64-standard:3.0", "BUILD_GENERAL1_LARGE", True),
        ("RegisterCodePackage-dev", "aws/codebuild/standard:7.0", "BUILD_GENERAL1_SMALL", False),
        ("Verify-prod", "aws/codebuild/standard:7.0", "BUILD_GENERAL1_SMALL", False),
    ],
)
def test_codebuild_images_and_privileges(
    synthesized: Synthesized, action: str, image: str, compute: str, privileged: bool
) -> None:
    environment = _project(synthesized, action)["Environment"]
    assert (environment["Image"], environment["ComputeType"], environment["PrivilegedMode"]) == (
        image,
        compute,
        privileged,
    )
    assert environment["Type"] == ("ARM_CONTAINER" if "aarch64" in image else "LINUX_CONTAINER")


def test_only_the_code_package_build_is_privileged(synthesized: Synthesized) -> None:
    projects = synthesized.resources(DELIVERY, "Delivery", "AWS::CodeBuild::Project").values()
    privileged = [
        p["Properties"]["Environment"]["Image"] for p in projects if p["Properties"]["Environment"]["PrivilegedMode"]
    ]
    assert privileged == ["aws/codebuild/amazonlinux-aarch64-standard:3.0"]


def test_the_code_package_is_built_once_cached_and_registered_per_stage(synthesized: Synthesized) -> None:
    build = _buildspec(_project(synthesized, "BuildCodePackage"))["phases"]["build"]["commands"]
    assert build == [
        "make .venv/.installed",
        ".venv/bin/panopipe package-app --build-only --output code-package --cache 's3://<ref>/code-package-cache/'",
    ]
    register = _buildspec(_project(synthesized, "RegisterCodePackage-dev"))["phases"]["build"]["commands"]
    assert register[-1] == (
        ".venv/bin/panopipe package-app --config config/dev.yaml --asset code-package "
        "--role-arn arn:aws:iam::222222222222:role/panopipe-dev-delivery-code-package"
    )
    action = _actions(synthesized)["RegisterCodePackage-prod"]
    assert {a["Name"] for a in action["InputArtifacts"]} == {
        "my_org_panorama_pipeline_Source",
        "BuildCodePackage_Output",
    }


def test_the_check_reads_the_stage_outputs_and_runs_the_smoke_run_where_asked(synthesized: Synthesized) -> None:
    variables = {
        v["name"]: v["value"]
        for v in json.loads(_actions(synthesized)["Verify-dev"]["Configuration"]["EnvironmentVariables"])
    }
    assert variables["STATE_MACHINE_ARN"].endswith("PipelineACD83EFA.StateMachineArn}") or variables[
        "STATE_MACHINE_ARN"
    ].endswith(".StateMachineArn}")
    assert {k: v.rsplit(".", 1)[1] for k, v in variables.items()} == {
        "STATE_MACHINE_ARN": "StateMachineArn}",
        "DATA_BUCKET": "DataBucketName}",
        "ARTIFACTS_BUCKET": "ArtifactsBucketName}",
        "ACCESS_LOGS_BUCKET": "AccessLogsBucketName}",
    }
    dev = _buildspec(_project(synthesized, "Verify-dev"))["phases"]["build"]["commands"][-1]
    prod = _buildspec(_project(synthesized, "Verify-prod"))["phases"]["build"]["commands"][-1]
    assert dev == (
        ".venv/bin/panopipe verify-stage --role-arn arn:aws:iam::222222222222:role/panopipe-dev-delivery-verify "
        "--smoke-model smoke/people_classifier.tar.gz --smoke-timeout-minutes 60"
    )
    assert (
        prod
        == ".venv/bin/panopipe verify-stage --role-arn arn:aws:iam::123456789012:role/panopipe-prod-delivery-verify"
    )
    assert _project(synthesized, "Verify-dev")["TimeoutInMinutes"] == 75


def test_step_roles_may_only_assume_their_role_in_the_stage_account(synthesized: Synthesized) -> None:
    for role, target in (
        ("panopipe-cd-dev-code-package", "arn:aws:iam::222222222222:role/panopipe-dev-delivery-code-package"),
        ("panopipe-cd-prod-verify", "arn:aws:iam::123456789012:role/panopipe-prod-delivery-verify"),
    ):
        assume = [
            s for s in _role_statements(synthesized, DELIVERY, "Delivery", role) if "sts:AssumeRole" in s["Action"]
        ]
        assert assume == [{"Action": "sts:AssumeRole", "Effect": "Allow", "Resource": target, "Sid": "AssumeStageRole"}]


def test_stage_roles_trust_only_their_step_role(synthesized: Synthesized) -> None:
    resources = synthesized.template(DEV, "DeliveryAccess")["Resources"]
    roles = {v["Properties"]["RoleName"]: v["Properties"] for v in resources.values() if v["Type"] == "AWS::IAM::Role"}
    assert sorted(roles) == ["panopipe-dev-delivery-code-package", "panopipe-dev-delivery-verify"]
    (trust,) = roles["panopipe-dev-delivery-verify"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"AWS": "arn:aws:iam::111111111111:root"}
    assert trust["Condition"] == {
        "ArnEquals": {"aws:PrincipalArn": "arn:aws:iam::111111111111:role/panopipe-cd-dev-verify"}
    }


def test_the_verify_role_can_read_but_not_change_the_stage(synthesized: Synthesized) -> None:
    actions = sorted(
        a
        for s in _role_statements(synthesized, DEV, "DeliveryAccess", "panopipe-dev-delivery-verify")
        for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    )
    assert actions == [
        "s3:GetBucketVersioning",
        "s3:ListBucket",
        "states:DescribeExecution",
        "states:DescribeStateMachine",
        "states:GetExecutionHistory",
        "states:StartExecution",
    ]


def test_the_code_package_role_holds_what_package_app_calls_and_no_more(synthesized: Synthesized) -> None:
    """The calls of ``panopipe package-app --asset`` (tests/test_code_package.py), by statement."""
    statements = _role_statements(synthesized, DEV, "DeliveryAccess", "panopipe-dev-delivery-code-package")
    by_sid = {s["Sid"]: sorted([s["Action"]] if isinstance(s["Action"], str) else s["Action"]) for s in statements}
    assert by_sid == {
        "RegisterCodePackage": [
            "panorama:DeregisterPackageVersion",
            "panorama:DescribePackage",
            "panorama:DescribePackageVersion",
            "panorama:RegisterPackageVersion",
        ],
        "CreatePackage": ["panorama:CreatePackage"],
        "WritePackageStorage": ["s3:GetObject", "s3:PutObject", "s3:PutObjectAcl"],
        "ListArtifacts": ["s3:ListBucket"],
        "ReadLastGoodPins": ["s3:GetObject"],
        "PackageHistory": ["s3:GetObject", "s3:PutObject"],
        "UseArtifactsKey": ["kms:Decrypt", "kms:GenerateDataKey"],
    }
    artifacts = "arn:aws:s3:::aws-panorama-panopipe-dev-artifacts-222222222222-us-west-2"
    resources = {s["Sid"]: s["Resource"] for s in statements}
    assert resources["ReadLastGoodPins"] == f"{artifacts}/deployments/*"
    assert resources["PackageHistory"] == f"{artifacts}/panorama/package-history/*"
    assert next(s for s in statements if s["Sid"] == "UseArtifactsKey")["Condition"] == {
        "ForAnyValue:StringEquals": {"kms:ResourceAliases": "alias/panopipe-dev-data"}
    }


def _path_free(template: dict[str, Any]) -> dict[str, Any]:
    """The template with the logical ids CDK derives from the construct path (event-rule permissions) masked."""
    text = json.dumps(mask_asset_hashes(template), sort_keys=True)
    return dict(json.loads(re.sub(r"(AllowEventRule)[A-Za-z0-9]+", r"\1<path>", text)))


def test_a_delivery_stage_deploys_the_same_stacks_as_cdk_deploy(synthesized: Synthesized) -> None:
    """config/example.yaml names its account and region: its delivery stage is the standalone stage.

    Only the ids of the two Lambda permissions of the trigger's rules differ: CDK derives them from
    the construct path, which holds the stage's place in the app.
    """
    for stack in ("Storage", "Application", "Pipeline"):
        assert _path_free(synthesized.template(PROD, stack)) == _path_free(synthesized.template("example", stack)), (
            stack
        )
    assert synthesized.stacks[f"{PROD}/Storage"]["stack_name"] == "panopipe-prod-storage"
    assert synthesized.stacks[f"{PROD}/Storage"]["termination_protection"] is True


@pytest.fixture
def snapshot_json(snapshot: SnapshotAssertion) -> SnapshotAssertion:
    return snapshot.use_extension(JSONSnapshotExtension)


@pytest.mark.parametrize(("stage", "stack"), [(DELIVERY, "Delivery"), (DEV, "DeliveryAccess")])
def test_delivery_templates_match_snapshot(
    synthesized: Synthesized, snapshot_json: SnapshotAssertion, stage: str, stack: str
) -> None:
    assert mask_asset_hashes(synthesized.template(stage, stack)) == snapshot_json
