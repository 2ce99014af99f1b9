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


# --- the command ------------------------------------------------------------------------------------------


@pytest.fixture
def command_env(aws: None, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """No local AWS, none of the output variables from the shell running the tests; credentials for STS."""
    from panopipe import local_state

    monkeypatch.setattr(local_state, "STATE_FILE", tmp_path_factory.mktemp("state") / "local.json")
    for name in OUTPUT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")


def _verify(*arguments: str, env: dict[str, str] | None = None) -> Any:
    from typer.testing import CliRunner

    from panopipe.cli import app

    return CliRunner().invoke(app, ["verify-stage", *arguments], env=env)


def test_verify_stage_reads_the_outputs_from_the_environment_and_assumes_the_role(command_env: None) -> None:
    role = "arn:aws:iam::123456789012:role/panopipe-dev-delivery-verify"
    result = _verify("--role-arn", role, "--smoke-model", "smoke/model.tar.gz", env=deployed_stage())
    assert result.exit_code == 0, result.output
    assert "ACTIVE; buckets aws-panorama-panopipe-dev-data-" in result.stdout
    assert f"from s3://{BUCKETS['DATA_BUCKET']}/smoke/model.tar.gz" in result.stdout
    assert "smoke run SUCCEEDED: arn:aws:states:us-east-1:123456789012:execution:panopipe-dev-pipeline:smoke-" in (
        result.stdout
    )


def test_verify_stage_takes_the_outputs_as_options_too(command_env: None) -> None:
    variables = deployed_stage()
    options = [f"--{name.lower().replace('_', '-')}" for name in OUTPUT_VARIABLES]
    result = _verify(
        *[v for option, name in zip(options, OUTPUT_VARIABLES, strict=True) for v in (option, variables[name])]
    )
    assert result.exit_code == 0, result.output


def test_verify_stage_fails_with_every_problem(command_env: None) -> None:
    result = _verify(env=deployed_stage(versioned=False))
    assert result.exit_code == exit_codes.RUN_FAILED
    assert "the stage is not ready:" in result.stderr
    assert result.stderr.count("has versioning never enabled, not Enabled") == 3


def test_verify_stage_fails_when_the_smoke_run_fails(command_env: None) -> None:
    result = _verify("--smoke-model", "smoke/model.tar.gz", "--smoke-run-name", "smoke-1", env=deployed_stage(FAILS))
    assert result.exit_code == exit_codes.RUN_FAILED
    assert "smoke run smoke-1 FAILED" in result.stderr and "no such model" in result.stderr


@pytest.mark.parametrize(
    ("arguments", "said"),
    [
        ([], "STATE_MACHINE_ARN, DATA_BUCKET, ARTIFACTS_BUCKET, ACCESS_LOGS_BUCKET not set"),
        (["--role-arn", "verify"], "--role-arn 'verify': "),
        (["--smoke-timeout-minutes", "1"], "--smoke-timeout-minutes"),  # typer: not in the range 5<=x<=480
    ],
)
def test_verify_stage_refuses_what_it_cannot_use(command_env: None, arguments: list[str], said: str) -> None:
    result = _verify(*arguments)
    assert result.exit_code == exit_codes.USAGE
    assert said in result.output
