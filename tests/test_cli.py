"""The `panopipe` command line: validate, summary, and run/watch/status against an endpoint (moto)."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path

import pytest
from typer.testing import CliRunner

from panopipe import local_state, runs
from panopipe.cli import app
from panopipe.config import load_config
from tests.conftest import ROOT, Synthesized

cli = CliRunner()


def test_summary_lists_every_stack_bucket_and_role(synthesized: Synthesized) -> None:
    result = cli.invoke(app, ["summary", str(synthesized.outdir)])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert re.search(r"^panopipe-prod-storage: \d+ resources, termination protection on$", out, re.M)
    assert "bucket  aws-panorama-panopipe-prod-data-123456789012-us-west-2" in out
    assert "role    panopipe-prod-sagemaker-execution" in out
    assert out.count("-pipeline: ") == 3
    assert "Nothing was deployed." in out


def test_summary_without_assembly(tmp_path: Path) -> None:
    result = cli.invoke(app, ["summary", str(tmp_path)])
    assert result.exit_code == 1
    assert "manifest.json not found: synthesize first" in result.stderr


def test_validate_checks_the_config_and_its_manifests(tmp_path: Path) -> None:
    result = cli.invoke(app, ["validate", str(ROOT / "config" / "example.yaml")])
    assert result.exit_code == 0, result.output
    assert "valid (panopipe-prod, 2 device(s), 2 camera(s); graph.json " in result.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("project: X\n")
    result = cli.invoke(app, ["validate", str(bad)])
    assert result.exit_code == 1
    assert "(6 problems)" in result.stderr
    assert "  - project = 'X': " in result.stderr
    assert "  - devices = <missing>: required field is missing" in result.stderr


# --- against an endpoint ----------------------------------------------------------------------------


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from moto import mock_aws

    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        yield


def test_run_without_a_deployed_pipeline_says_what_to_do(aws: None) -> None:
    result = cli.invoke(app, ["run", "--config", str(ROOT / "config" / "dev.yaml")])
    assert result.exit_code == 1
    assert "stack panopipe-dev-pipeline is not deployed here" in result.stderr


def _deployed(config_path: Path) -> runs.Target:
    """A pipeline stack with a (one-state) state machine, and the data bucket, in moto."""
    import boto3

    config = load_config(config_path, base_dir=ROOT)
    definition = json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}})
    template = {
        "Resources": {
            "Role": {
                "Type": "AWS::IAM::Role",
                "Properties": {"AssumeRolePolicyDocument": {"Version": "2012-10-17", "Statement": []}},
            },
            "Machine": {
                "Type": "AWS::StepFunctions::StateMachine",
                "Properties": {"DefinitionString": definition, "RoleArn": {"Fn::GetAtt": ["Role", "Arn"]}},
            },
        },
        "Outputs": {"StateMachineArn": {"Value": {"Ref": "Machine"}}},
    }
    boto3.client("cloudformation").create_stack(StackName="panopipe-dev-pipeline", TemplateBody=json.dumps(template))
    target = runs.find_target(config)
    boto3.client("s3").create_bucket(Bucket=target.data_bucket)
    return target


def test_a_data_set_run_uploads_the_sample_and_is_named_after_its_version(aws: None) -> None:
    import boto3

    target = _deployed(ROOT / "config" / "dev.yaml")
    assert target.data_bucket == "aws-panorama-panopipe-dev-data-123456789012-us-east-1"
    result = cli.invoke(app, ["run", "--config", str(ROOT / "config" / "dev.yaml"), "--no-watch"])
    assert result.exit_code == 0, result.output
    keys = sorted(o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=target.data_bucket)["Contents"])
    assert "datasets/sample/_READY" in keys
    assert any(k.startswith("datasets/sample/train/") for k in keys)
    assert any(k.startswith("datasets/sample/validation/") for k in keys)
    (execution,) = boto3.client("stepfunctions").list_executions(stateMachineArn=target.state_machine_arn)["executions"]
    assert re.fullmatch(r"ds-sample-[0-9a-f]{12}", execution["name"])
    assert json.loads(
        boto3.client("stepfunctions").describe_execution(executionArn=execution["executionArn"])["input"]
    ) == {"dataset": f"s3://{target.data_bucket}/datasets/sample/"}


def test_a_model_run_skips_the_upload(aws: None) -> None:
    import boto3

    target = _deployed(ROOT / "config" / "dev.yaml")
    model = f"s3://{target.data_bucket}/imported/model.tar.gz"
    result = cli.invoke(app, ["run", "--config", str(ROOT / "config" / "dev.yaml"), "--model", model, "--no-watch"])
    assert result.exit_code == 0, result.output
    (execution,) = boto3.client("stepfunctions").list_executions(stateMachineArn=target.state_machine_arn)["executions"]
    arn = execution["executionArn"]
    assert json.loads(boto3.client("stepfunctions").describe_execution(executionArn=arn)["input"]) == {"model": model}


def test_status_lists_the_runs(aws: None) -> None:
    target = _deployed(ROOT / "config" / "dev.yaml")
    runs.start(target, {"model": "s3://x/model.tar.gz"}, "first-run")
    result = cli.invoke(app, ["status", "--config", str(ROOT / "config" / "dev.yaml")])
    assert result.exit_code == 0, result.output
    assert "first-run" in result.stdout


def test_progress_reads_the_steps_and_the_outcome() -> None:
    from datetime import datetime, timedelta

    t0 = datetime(2026, 11, 30, tzinfo=UTC)
    progress = runs.Progress("arn:aws:states:us-east-1:1:execution:m:r", "SUCCEEDED", t0, t0 + timedelta(seconds=9))
    progress.steps = [runs.Step("Deploy", "Task", t0, t0 + timedelta(seconds=2))]
    progress.output = {
        "training": {"metric": {"name": "validation:accuracy", "value": 0.93, "threshold": 0.8}},
        "package": {"package_name": "pkg", "package_version": "1.0", "patch_version": "abc"},
        "deployment": {"devices": [{"device": "local-device-1", "instance_id": "ai-1", "status": "SUCCEEDED"}]},
    }
    assert progress.done and progress.steps[0].seconds(t0) == 2
    assert progress.facts() == {
        "metric": "validation:accuracy = 0.93 (threshold 0.8)",
        "package version": "pkg 1.0 patch abc",
        "instance on local-device-1": "ai-1 (SUCCEEDED)",
    }


def test_local_state_points_clients_at_a_live_emulator_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    state_file = tmp_path / "local.json"
    live = {"endpoint": "http://localhost:4599", "port": 4599, "pid": os.getpid(), "region": "us-east-1"}
    state_file.write_text(json.dumps(live))
    saved = local_state.apply_endpoint(state_file)
    assert os.environ["AWS_ENDPOINT_URL"] == "http://localhost:4599"
    local_state.restore(saved)
    assert "AWS_ENDPOINT_URL" not in os.environ
    state_file.write_text(json.dumps({**live, "pid": 2**22 + 12345}))
    assert local_state.apply_endpoint(state_file) == {}, "a dead emulator is ignored"
