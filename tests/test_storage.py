"""Fine-grained assertions on the stateful storage stack."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import STAGE_CONFIGS, Synthesized

#: Logical ids of stateful resources. Changing one replaces a bucket or key: never do it.
STATEFUL_LOGICAL_IDS = {
    "StorageDataKeyE15BA43B": "AWS::KMS::Key",
    "StorageAccessLogsBucketFEE4D6FB": "AWS::S3::Bucket",
    "StorageDataBucketB1B922FA": "AWS::S3::Bucket",
    "StorageArtifactsBucketB19151BF": "AWS::S3::Bucket",
}


def _name(bucket: dict[str, Any]) -> str:
    name = bucket["Properties"]["BucketName"]
    return str(name["Fn::Sub"] if isinstance(name, dict) else name)


@pytest.mark.parametrize("stage", sorted(STAGE_CONFIGS))
def test_stateful_logical_ids_never_change(synthesized: Synthesized, stage: str) -> None:
    resources = synthesized.resources(stage, "Storage")
    for logical_id, type_ in STATEFUL_LOGICAL_IDS.items():
        assert resources[logical_id]["Type"] == type_


def test_every_bucket_in_every_stack_is_named_aws_panorama(synthesized: Synthesized) -> None:
    buckets = [
        b for _, _, t in synthesized.all_templates() for b in t["Resources"].values() if b["Type"] == "AWS::S3::Bucket"
    ]
    # three per environment (the delivery pipeline's two stages too), two in the delivery stack
    assert len(buckets) == 3 * (len(STAGE_CONFIGS) + 2) + 2
    for bucket in buckets:
        assert _name(bucket).startswith("aws-panorama-")


def test_bucket_names_follow_the_pattern(synthesized: Synthesized) -> None:
    names = sorted(_name(b) for b in synthesized.resources("example", "Storage", "AWS::S3::Bucket").values())
    assert names == [
        f"aws-panorama-panopipe-prod-{purpose}-123456789012-us-west-2" for purpose in ("artifacts", "data", "logs")
    ]
    dev = sorted(_name(b) for b in synthesized.resources("dev", "Storage", "AWS::S3::Bucket").values())
    assert dev[1] == "aws-panorama-panopipe-dev-data-${AWS::AccountId}-${AWS::Region}"


@pytest.mark.parametrize("stage", sorted(STAGE_CONFIGS))
def test_buckets_are_retained_versioned_private(synthesized: Synthesized, stage: str) -> None:
    for logical_id, bucket in synthesized.resources(stage, "Storage", "AWS::S3::Bucket").items():
        props = bucket["Properties"]
        assert bucket["DeletionPolicy"] == "Retain", logical_id
        assert bucket["UpdateReplacePolicy"] == "Retain", logical_id
        assert props["VersioningConfiguration"] == {"Status": "Enabled"}, logical_id
        assert props["PublicAccessBlockConfiguration"] == {
            "BlockPublicAcls": True,
            "BlockPublicPolicy": True,
            "IgnorePublicAcls": True,
            "RestrictPublicBuckets": True,
        }, logical_id


def test_key_is_retained_and_rotated(synthesized: Synthesized) -> None:
    key = synthesized.resources("dev", "Storage")["StorageDataKeyE15BA43B"]
    assert key["DeletionPolicy"] == "Retain"
    assert key["Properties"]["EnableKeyRotation"] is True


def test_data_and_artifacts_are_kms_encrypted_with_the_pipeline_key(synthesized: Synthesized) -> None:
    resources = synthesized.resources("dev", "Storage")
    for logical_id in ("StorageDataBucketB1B922FA", "StorageArtifactsBucketB19151BF"):
        (rule,) = resources[logical_id]["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        assert rule["BucketKeyEnabled"] is True
        assert rule["ServerSideEncryptionByDefault"] == {
            "SSEAlgorithm": "aws:kms",
            "KMSMasterKeyID": {"Fn::GetAtt": ["StorageDataKeyE15BA43B", "Arn"]},
        }
    # S3 server access logging cannot deliver to SSE-KMS buckets.
    (log_rule,) = resources["StorageAccessLogsBucketFEE4D6FB"]["Properties"]["BucketEncryption"][
        "ServerSideEncryptionConfiguration"
    ]
    assert log_rule["ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}


def test_every_bucket_policy_denies_plain_http_and_old_tls(synthesized: Synthesized) -> None:
    policies = synthesized.resources("dev", "Storage", "AWS::S3::BucketPolicy")
    assert len(policies) == 3
    for logical_id, policy in policies.items():
        statements = policy["Properties"]["PolicyDocument"]["Statement"]
        denies = {json_key(s["Condition"]): s for s in statements if s["Effect"] == "Deny" and s["Action"] == "s3:*"}
        assert "Bool:aws:SecureTransport=false" in denies, logical_id
        assert "NumericLessThan:s3:TlsVersion=1.2" in denies, logical_id


def json_key(condition: dict[str, dict[str, Any]]) -> str:
    ((operator, values),) = condition.items()
    ((key, value),) = values.items()
    return f"{operator}:{key}={str(value).lower()}"


def test_data_bucket_sends_events_to_eventbridge_without_a_custom_resource(synthesized: Synthesized) -> None:
    resources = synthesized.resources("dev", "Storage")
    data = resources["StorageDataBucketB1B922FA"]["Properties"]
    assert data["NotificationConfiguration"] == {"EventBridgeConfiguration": {"EventBridgeEnabled": True}}
    assert not [r for r in resources.values() if r["Type"].startswith("Custom::")]
    assert not synthesized.resources("dev", "Storage", "AWS::Lambda::Function")


def test_access_logs_of_data_and_artifacts_go_to_the_log_bucket(synthesized: Synthesized) -> None:
    resources = synthesized.resources("dev", "Storage")
    for logical_id, prefix in (
        ("StorageDataBucketB1B922FA", "data/"),
        ("StorageArtifactsBucketB19151BF", "artifacts/"),
    ):
        logging = resources[logical_id]["Properties"]["LoggingConfiguration"]
        assert logging == {
            "DestinationBucketName": {"Ref": "StorageAccessLogsBucketFEE4D6FB"},
            "LogFilePrefix": prefix,
        }


def test_old_artifact_versions_expire_after_the_configured_days(synthesized: Synthesized) -> None:
    artifacts = synthesized.resources("example", "Storage")["StorageArtifactsBucketB19151BF"]
    (rule,) = artifacts["Properties"]["LifecycleConfiguration"]["Rules"]
    assert rule["NoncurrentVersionExpiration"] == {"NoncurrentDays": 90}
    assert rule["ExpiredObjectDeleteMarker"] is True
    assert rule["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 7}
    assert rule["Status"] == "Enabled"


@pytest.mark.parametrize(("stage", "protected"), [("dev", False), ("example", True), ("script", True)])
def test_termination_protection_outside_dev(synthesized: Synthesized, stage: str, protected: bool) -> None:
    assert synthesized.stacks[f"{stage}/Storage"]["termination_protection"] is protected
    assert not synthesized.stacks[f"{stage}/Application"]["termination_protection"]
    assert not synthesized.stacks[f"{stage}/Pipeline"]["termination_protection"]


def test_stack_names_and_order(synthesized: Synthesized) -> None:
    assert synthesized.stacks["example/Storage"]["stack_name"] == "panopipe-prod-storage"
    assert synthesized.stacks["example/Application"]["stack_name"] == "panopipe-prod-application"
    assert synthesized.stacks["example/Pipeline"]["stack_name"] == "panopipe-prod-pipeline"
    application = synthesized.stacks["example/Application"]["dependencies"]
    assert [d for d in application if not d.endswith(".assets")] == ["examplestageStorageF4A63C57"]
    pipeline = synthesized.stacks["example/Pipeline"]["dependencies"]
    assert [d for d in pipeline if not d.endswith(".assets")] == [
        "examplestageApplicationB24E04F2",
        "examplestageStorageF4A63C57",
    ]


def test_the_storage_stack_says_where_the_buckets_are(synthesized: Synthesized) -> None:
    outputs = synthesized.template("example", "Storage")["Outputs"]
    names = {key: output["Value"] for key, output in outputs.items() if not key.startswith("PublishOutput")}
    assert names == {
        "DataBucketName": {"Ref": "StorageDataBucketB1B922FA"},
        "ArtifactsBucketName": {"Ref": "StorageArtifactsBucketB19151BF"},
        "AccessLogsBucketName": {"Ref": "StorageAccessLogsBucketFEE4D6FB"},
    }


@pytest.mark.parametrize("stage", ["dev", "example"])
def test_every_log_group_is_encrypted_with_the_project_key_which_logs_may_use_for_them_only(
    synthesized: Synthesized, stage: str
) -> None:
    prefix = {"dev": "panopipe-dev", "example": "panopipe-prod"}[stage]
    groups = [g for s, stack, t in synthesized.all_templates() if s == stage for g in _log_groups(t)]
    # 20 steps (2 of them preparation, 3 the deployment lock, 2 the fleet), the trigger, the template writer,
    # the state machine
    assert len(groups) == 23
    for group in groups:
        assert group["LogGroupName"].startswith(f"/{prefix}/"), group["LogGroupName"]
        assert "StorageDataKey" in json.dumps(group["KmsKeyId"]), group["LogGroupName"]
        assert group["RetentionInDays"] == 365
    (key,) = synthesized.resources(stage, "Storage", "AWS::KMS::Key").values()
    (logs,) = [
        s
        for s in key["Properties"]["KeyPolicy"]["Statement"]
        if s.get("Sid") == "AllowCloudWatchLogsForThisEnvironment"
    ]
    assert logs["Principal"] == {"Service": {"Fn::Sub": "logs.${AWS::Region}.amazonaws.com"}}
    assert logs["Condition"] == {
        "ArnLike": {
            "kms:EncryptionContext:aws:logs:arn": {
                "Fn::Sub": f"arn:${{AWS::Partition}}:logs:${{AWS::Region}}:${{AWS::AccountId}}:log-group:/{prefix}/*"
            }
        }
    }


def _log_groups(template: dict[str, Any]) -> list[dict[str, Any]]:
    return [r["Properties"] for r in template["Resources"].values() if r["Type"] == "AWS::Logs::LogGroup"]
