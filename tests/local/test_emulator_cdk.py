"""The pinned CDK CLI bootstraps and deploys the real dev app into the emulator; the real state machine
then runs the real handlers there, started directly and by the data set trigger (S3 → EventBridge →
Lambda)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import boto3
import pytest

from panopipe.local.emulator import Emulator, WSGIMiddleware
from tests.conftest import ROOT

CDK = ROOT / "node_modules" / ".bin" / "cdk"
STACKS = ["panopipe-dev-storage", "panopipe-dev-service-roles", "panopipe-dev-application", "panopipe-dev-pipeline"]
ARTIFACTS_BUCKET = "aws-panorama-panopipe-dev-artifacts-123456789012-us-east-1"
DATA_BUCKET = "aws-panorama-panopipe-dev-data-123456789012-us-east-1"


def panorama_wrap() -> WSGIMiddleware | None:
    """The local Panorama service as a wrap of moto's app, if the project has it."""
    try:
        from panopipe.local import panorama
    except ImportError:
        return None
    wrap: WSGIMiddleware = panorama.wrap
    return wrap


def cli_environment(aws: Emulator) -> dict[str, str]:
    """What tests/test_cli_synth.py gives the CLI, with the emulator's AWS_* instead of none."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("CDK_")}
    env["PATH"] = os.pathsep.join(
        [
            str(ROOT / "node_modules" / "node" / "bin"),
            str(ROOT / "node_modules" / ".bin"),
            str(Path(sys.executable).parent),
            env["PATH"],
        ]
    )
    env.update(
        CDK_DISABLE_VERSION_CHECK="1", CDK_DISABLE_CLI_TELEMETRY="true", JSII_SILENCE_WARNING_UNTESTED_NODE_VERSION="1"
    )
    return aws.client_environment(env)


def cdk(args: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, subprocess.CompletedProcess[str]]:
    started = time.monotonic()
    result = subprocess.run(
        [str(CDK), *args, "--no-notices"], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    return time.monotonic() - started, result


@pytest.mark.cli
def test_cdk_cli_deploys_the_dev_app_into_the_emulator(tmp_path: Path) -> None:
    if not CDK.exists():
        pytest.fail("node_modules/.bin/cdk is missing: run `make test`, which installs the pinned CLI")
    wrap = panorama_wrap()
    if wrap is None:
        pytest.xfail(
            "the application stack's AWS::Panorama::Package resources need the local Panorama service "
            "(panopipe/local/panorama.py): without it moto skips them and GetAtt PackageId fails the stack"
        )
    with Emulator(wrap=wrap, lambda_cache_dir=tmp_path / "lambda") as aws:
        env = cli_environment(aws)
        # bootstrap from a directory without cdk.json: no synth needed
        (tmp_path / "bootstrap").mkdir()
        bootstrap_seconds, bootstrap = cdk(["bootstrap", "aws://123456789012/us-east-1"], tmp_path / "bootstrap", env)
        assert bootstrap.returncode == 0, bootstrap.stderr[-3000:]

        # every stack of the stage ("--all" selects top-level stacks only; the app's are in a Stage)
        outputs_file = tmp_path / "outputs.json"
        deploy_args = ["deploy", "**", "--require-approval", "never", "-c", "config=config/dev.yaml"]
        deploy_args += ["--output", str(tmp_path / "cdk.out"), "--outputs-file", str(outputs_file)]
        deploy_seconds, deploy = cdk(deploy_args, ROOT, env)
        assert deploy.returncode == 0, deploy.stderr[-6000:]

        session = boto3.Session(aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
        cfn = session.client("cloudformation", endpoint_url=aws.endpoint)
        statuses = {name: cfn.describe_stacks(StackName=name)["Stacks"][0]["StackStatus"] for name in STACKS}
        assert statuses == dict.fromkeys(STACKS, "CREATE_COMPLETE")
        outputs: dict[str, dict[str, str]] = json.loads(outputs_file.read_text())
        machine = next(values["StateMachineArn"] for values in outputs.values() if "StateMachineArn" in values)
        assert machine.endswith(":stateMachine:panopipe-dev-pipeline")

        # the manifest template's custom resource (a Python Lambda) wrote its object
        s3 = session.client("s3", endpoint_url=aws.endpoint)
        template = json.loads(
            s3.get_object(Bucket=ARTIFACTS_BUCKET, Key="panorama/application-manifest.json")["Body"].read()
        )
        assert template["spec"]["model_package"] == "panopipe_dev_people_classifier"

        # one execution of the real state machine (an input the first step refuses: no waits)
        sfn = session.client("stepfunctions", endpoint_url=aws.endpoint)
        started = time.monotonic()
        execution = sfn.start_execution(stateMachineArn=machine, input=json.dumps({"dataset": "s3://elsewhere/x/"}))
        description: dict[str, Any] = {"status": "RUNNING"}
        while description["status"] == "RUNNING" and time.monotonic() - started < 60:
            time.sleep(0.1)
            description = sfn.describe_execution(executionArn=execution["executionArn"])
        execution_seconds = time.monotonic() - started
        assert description["status"] == "FAILED" and description["error"] == "InvalidInput"
        history = sfn.get_execution_history(executionArn=execution["executionArn"])["events"]
        entered = [e["stateEnteredEventDetails"]["name"] for e in history if "stateEnteredEventDetails" in e]
        assert entered[:4] == ["Start", "ValidateInput", "ValidateInput failed", "Notify failure"]
        assert sum(e["type"] == "LambdaFunctionSucceeded" for e in history) == 1  # the notification went out

        # the data set trigger: a _READY marker → EventBridge rule → Trigger function → a run
        s3.put_object(Bucket=DATA_BUCKET, Key="datasets/incomplete/_READY", Body=b"")
        deadline = time.monotonic() + 30
        runs: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            runs = sfn.list_executions(stateMachineArn=machine)["executions"]
            if len(runs) == 2 and all(run["status"] != "RUNNING" for run in runs):
                break
            time.sleep(0.2)
        triggered = [run for run in runs if run["executionArn"] != execution["executionArn"]]
        assert [run["status"] for run in triggered] == ["FAILED"], runs
        cause = sfn.describe_execution(executionArn=triggered[0]["executionArn"])
        assert cause["error"] == "InvalidInput" and "datasets/incomplete/" in cause["cause"]

    print(
        f"\ncdk bootstrap {bootstrap_seconds:.1f} s, cdk deploy (synth + 4 stacks) {deploy_seconds:.1f} s, "
        f"one execution {execution_seconds:.1f} s"
    )
