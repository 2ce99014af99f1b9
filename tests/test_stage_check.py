"""``panopipe verify-stage``: the post-deploy check of a delivery stage, against moto."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from panopipe import exit_codes
from panopipe.runs import RunError
from panopipe.stage_check import OUTPUT_VARIABLES, CheckFailed, StageOutputs, check_stage, smoke_run

SUCCEEDS = {"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}
FAILS = {"StartAt": "Gate", "States": {"Gate": {"Type": "Fail", "Error": "InvalidInput", "Cause": "no such model"}}}
BUCKETS = {
    "DATA_BUCKET": "aws-panorama-panopipe-dev-data-123456789012-us-east-1",
    "ARTIFACTS_BUCKET": "aws-panorama-panopipe-dev-artifacts-123456789012-us-east-1",
    "ACCESS_LOGS_BUCKET": "aws-panorama-panopipe-dev-logs-123456789012-us-east-1",
}


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from moto import mock_aws

    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        yield


def deployed_stage(machine: dict[str, Any] = SUCCEEDS, versioned: bool = True) -> dict[str, str]:
    """A state machine and three buckets as a delivery stage deploys them; the variables its check gets."""
    import boto3

    arn = boto3.client("stepfunctions").create_state_machine(
        name="panopipe-dev-pipeline",
        definition=json.dumps(machine),
        roleArn="arn:aws:iam::123456789012:role/panopipe-dev-state-machine",
    )["stateMachineArn"]
    s3 = boto3.client("s3")
    for bucket in BUCKETS.values():
        s3.create_bucket(Bucket=bucket)
        if versioned:
            s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    return {"STATE_MACHINE_ARN": arn, **BUCKETS}


def test_a_complete_stage_has_no_problem(aws: None) -> None:
    outputs = StageOutputs.from_variables(deployed_stage())
    assert outputs.region == "us-east-1"
    assert outputs.buckets["data"] == BUCKETS["DATA_BUCKET"]
    assert check_stage(outputs) == []


def test_missing_and_unversioned_resources_are_each_named(aws: None) -> None:
    import boto3

    variables = deployed_stage(versioned=False)
    boto3.client("s3").delete_bucket(Bucket=BUCKETS["ACCESS_LOGS_BUCKET"])
    gone = variables["STATE_MACHINE_ARN"].replace("panopipe-dev-pipeline", "panopipe-dev-gone")
    problems = check_stage(StageOutputs.from_variables({**variables, "STATE_MACHINE_ARN": gone}))
    assert problems == [
        f"state machine {gone} does not exist",
        f"data bucket {BUCKETS['DATA_BUCKET']} has versioning never enabled, not Enabled",
        f"artifacts bucket {BUCKETS['ARTIFACTS_BUCKET']} has versioning never enabled, not Enabled",
        f"access-log bucket {BUCKETS['ACCESS_LOGS_BUCKET']} does not exist",
    ]


def test_the_outputs_must_all_be_given() -> None:
    with pytest.raises(RunError) as error:
        StageOutputs.from_variables({"STATE_MACHINE_ARN": "arn:aws:states:us-east-1:123456789012:stateMachine:x"})
    assert error.value.exit_code == exit_codes.USAGE
    assert str(error.value).startswith("DATA_BUCKET, ARTIFACTS_BUCKET, ACCESS_LOGS_BUCKET not set")
    assert "(DataBucketName, ArtifactsBucketName, AccessLogsBucketName)" in str(error.value)
    assert set(OUTPUT_VARIABLES.values()) == {
        "StateMachineArn",
        "DataBucketName",
        "ArtifactsBucketName",
        "AccessLogsBucketName",
    }


def test_a_smoke_run_starts_from_the_model_and_must_succeed(aws: None) -> None:
    import boto3

    outputs = StageOutputs.from_variables(deployed_stage())
    said: list[str] = []
    arn = smoke_run(outputs, "smoke/model.tar.gz", timeout_seconds=30, name="smoke-1", interval=0.05, say=said.append)
    assert arn.endswith(":execution:panopipe-dev-pipeline:smoke-1")
    described = boto3.client("stepfunctions").describe_execution(executionArn=arn)
    assert json.loads(described["input"]) == {"model": f"s3://{BUCKETS['DATA_BUCKET']}/smoke/model.tar.gz"}
    assert said[0] == f"smoke run smoke-1 started from s3://{BUCKETS['DATA_BUCKET']}/smoke/model.tar.gz"


def test_a_failed_smoke_run_fails_the_check_with_its_cause(aws: None) -> None:
    outputs = StageOutputs.from_variables(deployed_stage(FAILS))
    with pytest.raises(CheckFailed) as error:
        smoke_run(outputs, "smoke/model.tar.gz", timeout_seconds=30, name="smoke-2", interval=0.05, say=lambda _: None)
    assert error.value.exit_code == exit_codes.RUN_FAILED
    assert str(error.value) == "smoke run smoke-2 FAILED: InvalidInput: no such model"


def test_a_smoke_run_still_running_at_the_timeout_fails_the_check_and_is_left_running(aws: None) -> None:
    waits = {"StartAt": "Train", "States": {"Train": {"Type": "Wait", "Seconds": 600, "End": True}}}
    outputs = StageOutputs.from_variables(deployed_stage(waits))
    with pytest.raises(CheckFailed, match=r"^smoke run smoke-3 still RUNNING after 0 s \(left running: arn:aws:states"):
        smoke_run(outputs, "smoke/model.tar.gz", timeout_seconds=0.2, name="smoke-3", interval=0.05, say=lambda _: None)
