"""The `panopipe` command line: validate, summary, and run/watch/status against an endpoint (moto)."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from panopipe import exit_codes, local_state, runs
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
    assert out.count("-pipeline: ") == 5, "three environments, and the delivery example's two stages"
    assert re.search(r"^Delivery: \d+ resources", out, re.M), "the delivery stack (named Delivery in the tests)"
    assert "Nothing was deployed." in out


def test_summary_without_assembly(tmp_path: Path) -> None:
    result = cli.invoke(app, ["summary", str(tmp_path)])
    assert result.exit_code == 2
    assert f"no manifest.json in {tmp_path}: synthesize first" in result.stderr


def test_validate_checks_the_config_and_its_manifests(tmp_path: Path) -> None:
    result = cli.invoke(app, ["validate", str(ROOT / "config" / "example.yaml")])
    assert result.exit_code == 0, result.output
    assert "valid (panopipe-prod, 2 device(s) + 1 tag group(s), 2 camera(s); graph.json " in result.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("project: X\n")
    result = cli.invoke(app, ["validate", str(bad)])
    assert result.exit_code == 2
    assert "(6 problems)" in result.stderr
    assert "  - project = 'X': " in result.stderr
    assert "  - devices = <missing>: required field is missing" in result.stderr


# --- against an endpoint ----------------------------------------------------------------------------


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """moto (state machines execute), fake credentials, and no local AWS even if one runs here."""
    from moto import mock_aws

    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setattr(local_state, "STATE_FILE", tmp_path_factory.mktemp("state") / "local.json")
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        yield


def test_run_without_a_deployed_pipeline_says_what_to_do(aws: None) -> None:
    result = cli.invoke(app, ["run", "--config", str(ROOT / "config" / "dev.yaml")])
    assert result.exit_code == exit_codes.AWS
    assert "stack panopipe-dev-pipeline is not deployed in us-east-1: deploy it" in result.stderr


SUCCEEDS = {"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}
FAILS = {"StartAt": "Gate", "States": {"Gate": {"Type": "Fail", "Error": "MetricBelowThreshold", "Cause": "0.5"}}}


def deployed_pipeline(
    config_path: Path = ROOT / "config" / "dev.yaml", machine: dict[str, Any] = SUCCEEDS
) -> runs.Target:
    """A pipeline stack whose StateMachineArn output names a (one-state) state machine, and the data bucket.

    moto executes only the state machines made through its Step Functions API (not CloudFormation's),
    so the machine is made first and the stack's output names it.
    """
    import boto3

    config = load_config(config_path, base_dir=ROOT)
    machine_arn = boto3.client("stepfunctions").create_state_machine(
        name="panopipe-dev-pipeline-machine",
        definition=json.dumps(machine),
        roleArn="arn:aws:iam::123456789012:role/panopipe-dev-state-machine",
    )["stateMachineArn"]
    template = {
        "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {"StateMachineArn": {"Value": machine_arn}},
    }
    boto3.client("cloudformation").create_stack(StackName="panopipe-dev-pipeline", TemplateBody=json.dumps(template))
    target = runs.find_target(config)
    boto3.client("s3").create_bucket(Bucket=target.data_bucket)
    return target


def test_a_data_set_run_uploads_the_sample_and_is_named_after_its_version(aws: None) -> None:
    import boto3

    target = deployed_pipeline()
    assert target.data_bucket == "aws-panorama-panopipe-dev-data-123456789012-us-east-1"
    result = cli.invoke(app, ["run", "--config", str(ROOT / "config" / "dev.yaml"), "--no-watch"])
    assert result.exit_code == 0, result.output
    keys = sorted(o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=target.data_bucket)["Contents"])
    assert "datasets/sample/_READY" in keys
    # the generated sample, raw: one folder of images per class (the run's preparation step prepares it)
    assert any(k.startswith("datasets/sample/person/") and k.endswith(".png") for k in keys)
    assert any(k.startswith("datasets/sample/empty/") and k.endswith(".png") for k in keys)
    (execution,) = boto3.client("stepfunctions").list_executions(stateMachineArn=target.state_machine_arn)["executions"]
    assert re.fullmatch(r"ds-sample-[0-9a-f]{12}", execution["name"])
    assert json.loads(
        boto3.client("stepfunctions").describe_execution(executionArn=execution["executionArn"])["input"]
    ) == {"dataset": f"s3://{target.data_bucket}/datasets/sample/"}


def test_a_model_run_skips_the_upload(aws: None) -> None:
    import boto3

    target = deployed_pipeline()
    model = f"s3://{target.data_bucket}/imported/model.tar.gz"
    result = cli.invoke(app, ["run", "--config", str(ROOT / "config" / "dev.yaml"), "--model", model, "--no-watch"])
    assert result.exit_code == 0, result.output
    (execution,) = boto3.client("stepfunctions").list_executions(stateMachineArn=target.state_machine_arn)["executions"]
    arn = execution["executionArn"]
    assert json.loads(boto3.client("stepfunctions").describe_execution(executionArn=arn)["input"]) == {"model": model}


MODEL_PATCH, CODE_PATCH = "a" * 64, "c" * 64
DEPLOYED = {
    "package": {
        "package_name": "panopipe_dev_people_classifier",
        "package_version": "1.0",
        "patch_version": MODEL_PATCH,
    },
    "code_package": {"package_name": "panopipe_dev_app", "package_version": "1.0", "patch_version": CODE_PATCH},
}


def test_status_lists_the_runs_with_the_package_versions_each_deployed(aws: None) -> None:
    """A run that succeeded (its output), one that failed after the registration (its last state's input)."""
    machine = {
        "StartAt": "Register",
        "States": {
            "Register": {"Type": "Pass", "Result": DEPLOYED, "Next": "Outcome"},
            "Outcome": {
                "Type": "Choice",
                "Choices": [{"Variable": "$$.Execution.Name", "StringEquals": "second-run", "Next": "Failed"}],
                "Default": "Done",
            },
            "Failed": {"Type": "Fail", "Error": "DeploymentFailed", "Cause": "device"},
            "Done": {"Type": "Succeed"},
        },
    }
    target = deployed_pipeline(machine=machine)
    for name in ("first-run", "second-run"):
        *_, last = runs.follow(target, runs.start(target, {"model": "s3://x/model.tar.gz"}, name), 0.05, 10)
        assert last.done, last.status
    result = cli.invoke(app, ["status", "--config", str(ROOT / "config" / "dev.yaml")])
    assert result.exit_code == 0, result.output
    rows = [line for line in result.stdout.splitlines() if "-run " in line]
    assert any("first-run" in row and "SUCCEEDED" in row and f"model 1.0 {MODEL_PATCH[:12]}" in row for row in rows)
    assert any("second-run" in row and "FAILED" in row and f"model 1.0 {MODEL_PATCH[:12]}" in row for row in rows)
    assert result.stdout.count(f"code 1.0 {CODE_PATCH[:12]}") == 2
    assert "(model) and panopipe_dev_app (code)" in result.stdout


def test_progress_reads_the_steps_and_the_outcome() -> None:
    from datetime import datetime, timedelta

    t0 = datetime(2026, 11, 30, tzinfo=UTC)
    progress = runs.Progress("arn:aws:states:us-east-1:1:execution:m:r", "SUCCEEDED", t0, t0 + timedelta(seconds=9))
    progress.steps = [runs.Step("Deploy", "Task", t0, t0 + timedelta(seconds=2))]
    progress.output = {
        "training": {"metric": {"name": "validation:accuracy", "value": 0.93, "threshold": 0.8}},
        "package": {"package_name": "pkg", "package_version": "1.0", "patch_version": "abc"},
        "code_package": {"package_name": "app", "package_version": "1.0", "patch_version": "def"},
        "deployment": {"devices": [{"device": "local-device-1", "instance_id": "ai-1", "status": "SUCCEEDED"}]},
    }
    assert progress.done and progress.steps[0].seconds(t0) == 2
    assert progress.facts() == {
        "metric": "validation:accuracy = 0.93 (threshold 0.8)",
        "model package": "pkg 1.0 patch abc",
        "code package": "app 1.0 patch def",
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


# --- watch: exit 0 for a SUCCEEDED run, 1 for a failed one ------------------------------------------


def test_watch_follows_the_newest_run_or_one_by_name_and_exits_0_when_it_succeeded(aws: None) -> None:
    target = deployed_pipeline()
    arn = runs.start(target, {"model": "s3://x/model.tar.gz"}, "good-run")
    for args in (["watch"], ["watch", "good-run"], ["watch", arn]):
        result = cli.invoke(app, args)
        assert result.exit_code == 0, result.output
        assert "run SUCCEEDED" in result.stdout


def test_watch_says_a_superseded_run_deployed_nothing_and_exits_0(aws: None) -> None:
    reason = "data datasets/a/ (…) is older than datasets/b/ (…), deployed by run r2: nothing deployed"
    superseded = {
        "StartAt": "Notify superseded",
        "States": {
            "Notify superseded": {
                "Type": "Pass",
                "Result": {"status": "SUPERSEDED", "reason": reason},
                "ResultPath": "$.summary",
                "Next": "Superseded",
            },
            "Superseded": {"Type": "Succeed"},
        },
    }
    target = deployed_pipeline(machine=superseded)
    runs.start(target, {"model": "s3://x/model.tar.gz"}, "old-run")
    result = cli.invoke(app, ["watch", "old-run"])
    assert result.exit_code == 0, result.output
    assert "run SUPERSEDED in " in result.stdout and reason in result.stdout.replace("\n", "")


def test_a_run_that_fails_exits_1_with_its_error(aws: None) -> None:
    target = deployed_pipeline(machine=FAILS)
    result = cli.invoke(app, ["run", "--model", f"s3://{target.data_bucket}/imported/model.tar.gz"])
    assert result.exit_code == 1, result.output
    assert "error: run FAILED: MetricBelowThreshold: 0.5" in result.stderr
    (execution,) = runs.recent_runs(target)
    watched = cli.invoke(app, ["watch", execution["executionArn"]])
    assert watched.exit_code == 1 and "run FAILED" in watched.stderr


def test_watch_interrupted_says_the_run_goes_on(aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    target = deployed_pipeline()
    arn = runs.start(target, {"model": "s3://x/model.tar.gz"}, "long-run")

    def interrupted(*_: object) -> Iterator[runs.Progress]:
        raise KeyboardInterrupt
        yield

    monkeypatch.setattr(runs, "follow", interrupted)
    result = cli.invoke(app, ["watch", arn])
    assert result.exit_code == 130
    assert f"stopped watching; the run goes on (panopipe watch {arn})" in result.stderr


def test_status_without_runs_says_so(aws: None) -> None:
    deployed_pipeline()
    result = cli.invoke(app, ["status"])
    assert result.exit_code == 0, result.output
    assert "panopipe-dev: no run yet (start one with panopipe run)" in result.stdout


def test_a_data_set_version_the_trigger_started_first_is_that_run(aws: None) -> None:
    target = deployed_pipeline()
    first = runs.start(target, {"dataset": "s3://b/datasets/sample/"}, "ds-sample-0123456789ab")
    assert runs.start(target, {"dataset": "s3://b/datasets/sample/"}, "ds-sample-0123456789ab") == first
