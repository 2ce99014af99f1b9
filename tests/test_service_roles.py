"""The SageMaker execution role (pipeline stack) and the Panorama runtime role (application stack):
trust, path and exact permissions."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import STAGE_CONFIGS, Synthesized

#: Where each role lives, and the start of its logical id.
SAGEMAKER = ("Pipeline", "SageMakerExecutionRole")
RUNTIME = ("Application", "PanoramaRuntimeRole")


def _role(synthesized: Synthesized, stage: str, where: tuple[str, str]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    stack, prefix = where
    resources = synthesized.resources(stage, stack)
    (role_id,) = [k for k, v in resources.items() if v["Type"] == "AWS::IAM::Role" and k.startswith(prefix)]
    (policy,) = [
        v
        for v in resources.values()
        if v["Type"] == "AWS::IAM::Policy" and v["Properties"]["Roles"] == [{"Ref": role_id}]
    ]
    return resources[role_id], policy["Properties"]["PolicyDocument"]["Statement"]


LOGS = "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:"


def _actions(statement: dict[str, Any]) -> list[str]:
    actions = statement["Action"]
    return sorted([actions] if isinstance(actions, str) else actions)


def _trust(role: dict[str, Any]) -> dict[str, Any]:
    (statement,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    return statement  # type: ignore[no-any-return]


@pytest.mark.parametrize("stage", sorted(STAGE_CONFIGS))
def test_sagemaker_role_is_trusted_by_sagemaker_in_this_account_only(synthesized: Synthesized, stage: str) -> None:
    role, _ = _role(synthesized, stage, SAGEMAKER)
    assert _trust(role) == {
        "Action": "sts:AssumeRole",
        "Effect": "Allow",
        "Principal": {"Service": "sagemaker.amazonaws.com"},
        "Condition": {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}},
    }
    assert "ManagedPolicyArns" not in role["Properties"]


def test_sagemaker_role_permissions_are_exactly_these(synthesized: Synthesized) -> None:
    """Pinned: reads data, reads/writes (never deletes) artifacts, logs, pulls its image. Nothing else."""
    role, statements = _role(synthesized, "example", SAGEMAKER)
    assert role["Properties"]["RoleName"] == "panopipe-prod-sagemaker-execution"
    data = "arn:aws:s3:::aws-panorama-panopipe-prod-data-123456789012-us-west-2"
    artifacts = "arn:aws:s3:::aws-panorama-panopipe-prod-artifacts-123456789012-us-west-2"
    summary = [(_actions(s), s["Resource"]) for s in statements]
    key = next(s["Resource"] for s in statements if _actions(s)[0].startswith("kms:"))
    assert summary == [
        (["s3:GetBucket*", "s3:GetObject*", "s3:List*"], [artifacts, f"{artifacts}/*", data, f"{data}/*"]),
        (["kms:Decrypt", "kms:DescribeKey", "kms:Encrypt", "kms:GenerateDataKey*", "kms:ReEncrypt*"], key),
        (["s3:AbortMultipartUpload", "s3:PutObject"], f"{artifacts}/*"),
        (
            ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents"],
            [
                {"Fn::Sub": f"{LOGS}/aws/sagemaker/{group}*"}
                for group in ("CompilationJobs", "ProcessingJobs", "TrainingJobs")
            ],
        ),
        (
            ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
            "arn:aws:ecr:us-west-2:433757028032:repository/image-classification",
        ),
        (  # the data preparation job's image (the preparation step is on by default)
            ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"],
            "arn:aws:ecr:us-west-2:763104351884:repository/pytorch-training",
        ),
        (["ecr:GetAuthorizationToken"], "*"),
    ]
    assert "Fn::GetStackOutput" in key, "the key is referenced from the storage stack, not copied"


def test_sagemaker_role_never_deletes_or_passes_roles(synthesized: Synthesized) -> None:
    for stage in STAGE_CONFIGS:
        _, statements = _role(synthesized, stage, SAGEMAKER)
        actions = [a for s in statements for a in _actions(s)]
        assert not [a for a in actions if "Delete" in a or a.startswith("iam:") or a.endswith(":*")]


def test_open_region_stack_maps_the_training_image_registry_per_panorama_region(
    synthesized: Synthesized,
) -> None:
    template = synthesized.template("dev", "Pipeline")
    (mapping,) = template["Mappings"].values()
    assert mapping == {
        "ap-southeast-1": {"account": "475088953585"},
        "ap-southeast-2": {"account": "544295431143"},
        "ca-central-1": {"account": "469771592824"},
        "eu-west-1": {"account": "685385470294"},
        "us-east-1": {"account": "811284229777"},
        "us-west-2": {"account": "433757028032"},
    }


def test_script_mode_role_pulls_the_framework_training_image(synthesized: Synthesized) -> None:
    _, statements = _role(synthesized, "script", SAGEMAKER)
    (pull,) = [s for s in statements if s.get("Sid") == "PullTrainingImage"]
    assert pull["Resource"]["Fn::Join"][1][-1] == "repository/pytorch-training"


@pytest.mark.parametrize("stage", sorted(STAGE_CONFIGS))
def test_panorama_runtime_role(synthesized: Synthesized, stage: str) -> None:
    role, statements = _role(synthesized, stage, RUNTIME)
    assert role["Properties"]["Path"] == "/service-role/"
    assert _trust(role)["Principal"] == {"Service": "panorama.amazonaws.com"}
    assert _trust(role)["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
    (statement,) = statements
    assert statement == {
        "Sid": "PublishAppMetrics",
        "Effect": "Allow",
        "Action": "cloudwatch:PutMetricData",
        "Resource": "*",
        "Condition": {
            "StringEquals": {"cloudwatch:namespace": statement["Condition"]["StringEquals"]["cloudwatch:namespace"]}
        },
    }
    assert statement["Condition"]["StringEquals"]["cloudwatch:namespace"].startswith("PanoramaPipeline/panopipe-")
