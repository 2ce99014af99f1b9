"""End to end in the local AWS: the real CDK CLI deploys the real app into the emulator, and the real
state machine runs the real handlers there (the issue's three runs, in order):

1. a data set run, started by its ``_READY`` marker (S3 → EventBridge → Trigger), to SUCCEEDED with
   at least two polls in every wait loop: the model package version is registered, the code package
   version that ``panopipe package-app`` registered is pinned, and the application instance runs on
   the device;
2. a run whose deployment fails on the device: it rolls back to run 1's manifest and fails;
3. another run that succeeds and replaces the instance running on the device;

then, in the same deployment, a raw image data set (class folders) that the preparation step's
Processing job really prepares (processing/prepare.py) before training on its channels, and one
the preparation rejects, which stops the run with the reason.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from typer.testing import CliRunner

from lambda_handlers.aws import panorama as panorama_client
from lambda_handlers.domain import READY_MARKER
from local_aws.emulator import Emulator
from local_aws.panorama_backend import PanoramaBackend
from local_aws.panorama_records import Progress
from local_aws.sagemaker_job_progress import SageMakerSettings
from panopipe import local_mode, runs
from panopipe.cli import app
from panopipe.config import load_config
from tests.conftest import ROOT
from tests.test_prepare import data_set

CONFIG = ROOT / "config" / "dev.yaml"
DEVICE = "local-device-1"
LOOPS = ("training", "compilation", "package", "deployment")


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Emulator, runs.Target]]:
    patch = pytest.MonkeyPatch()
    panorama = PanoramaBackend(devices=[DEVICE], progress=Progress(2, 2, 2))  # every status lasts two polls
    sagemaker = SageMakerSettings(in_progress_describes=3)  # StartTraining's own describe counts too
    cache = tmp_path_factory.mktemp("lambda")
    try:
        with Emulator(panorama=panorama, sagemaker=sagemaker, lambda_cache_dir=cache) as aws:
            for name, value in aws.env().items():
                patch.setenv(name, value)
            local_mode.deploy(aws.endpoint, "us-east-1", CONFIG, poll_seconds=1, say=lambda _: None)
            # the code package, built without Docker and registered by the project (not by the emulator)
            packaged = CliRunner().invoke(app, ["package-app", "--config", str(CONFIG)])
            assert packaged.exit_code == 0, packaged.output
            yield aws, runs.find_target(load_config(CONFIG, base_dir=ROOT))
    finally:
        patch.undo()


def _wait(target: runs.Target, arn: str, timeout: float = 90) -> runs.Progress:
    *_, last = runs.follow(target, arn, interval=0.5, timeout=timeout)
    return last


def _waits(progress: runs.Progress) -> dict[str, int]:
    return {loop: sum(s.name == f"Wait for {loop}" for s in progress.steps) for loop in (*LOOPS, "rollback")}


def _instances() -> list[dict[str, Any]]:
    client = panorama_client.new_client("us-east-1")
    (device,) = client.list_devices()["Devices"]
    instances = client.list_application_instances(DeviceId=device["DeviceId"])["ApplicationInstances"]
    return [dict(instance) for instance in instances]


def _running() -> dict[str, Any]:
    (running,) = [i for i in _instances() if i["Status"] == "DEPLOYMENT_SUCCEEDED"]
    return running


def test_three_runs_deploy_roll_back_and_replace(deployed: tuple[Emulator, runs.Target], tmp_path: Path) -> None:
    aws, target = deployed
    sfn = boto3.client("stepfunctions")
    started = time.monotonic()

    # 1. the data set's _READY marker starts the run (EventBridge → Trigger function)
    version = runs.upload_dataset(target, ROOT / "panopipe" / "samples" / "dataset", "people-1")
    name = runs.dataset_run_name(target, "people-1", version)
    arn = f"{target.state_machine_arn.replace(':stateMachine:', ':execution:')}:{name}"
    deadline = time.monotonic() + 30
    while not sfn.list_executions(stateMachineArn=target.state_machine_arn)["executions"]:
        assert time.monotonic() < deadline, "the marker started no run"
        time.sleep(0.2)
    first = _wait(target, arn)
    assert first.status == "SUCCEEDED", (first.error, first.cause)
    waits = _waits(first)
    assert all(waits[loop] >= 2 for loop in LOOPS), waits
    output = first.output or {}
    package = output["package"]
    client = panorama_client.new_client("us-east-1")
    version_status = client.describe_package_version(
        PackageId=package["package_id"], PackageVersion="1.0", PatchVersion=package["patch_version"]
    )
    assert version_status["Status"] == "REGISTER_COMPLETED"
    code = output["code_package"]
    code_status = client.describe_package_version(
        PackageId=code["package_id"], PackageVersion="1.0", PatchVersion=code["patch_version"]
    )
    assert code_status["Status"] == "REGISTER_COMPLETED" and code_status["IsLatestPatch"]
    (device_record,) = output["deployment"]["devices"]
    first_instance = device_record["instance_id"]
    assert _running()["ApplicationInstanceId"] == first_instance
    model = output["model"]["s3_uri"]
    watched = CliRunner().invoke(app, ["watch", arn, "--config", str(CONFIG)])
    assert watched.exit_code == 0, watched.output
    shown_facts = ("CheckTraining ×", "metric: validation:accuracy = ", package["patch_version"], code["patch_version"])
    for shown in (*shown_facts, first_instance):
        assert shown in watched.stdout, shown
    assert "run SUCCEEDED" in watched.stdout

    # 2. the device fails the next deployment: the run rolls back to run 1's manifest, and fails
    aws.panorama.fail_next_deployments(DEVICE, 1, reason="camera stream unreachable")
    second = _wait(target, runs.start(target, {"model": model}, "model-run-fails"))
    assert second.status == "FAILED" and second.error == "DeploymentFailed", (second.error, second.cause)
    assert "camera stream unreachable" in (second.cause or "")
    failed_watch = CliRunner().invoke(app, ["watch", second.arn, "--config", str(CONFIG)])
    assert failed_watch.exit_code == 1
    assert (
        "run FAILED at CheckDeployment: DeploymentFailed: " in failed_watch.stderr
        and "camera stream unreachable" in failed_watch.stderr
    )
    tasks = [s.name for s in second.steps if s.kind == "Task"]
    assert "Rollback" in tasks and "CheckRollback" in tasks
    assert tasks[-3:] == ["FinishDeployment", "Release lock of a failed run", "Notify failure"]
    restored = _running()
    assert restored["Tags"].get("panopipe:rollback-of") == "model-run-fails"
    last_good = json.loads(
        boto3.client("s3")
        .get_object(
            Bucket=target.data_bucket.replace("-data-", "-artifacts-"), Key=f"deployments/{DEVICE}/last-good.json"
        )["Body"]
        .read()
    )
    assert last_good["run"] == name, "the failed run did not overwrite the last good deployment"

    # 3. a run that succeeds replaces the instance running on the device
    third = _wait(target, runs.start(target, {"model": model}, "model-run-replaces"))
    assert third.status == "SUCCEEDED", (third.error, third.cause)
    (replacing,) = (third.output or {})["deployment"]["devices"]
    assert replacing["replaced"] == restored["ApplicationInstanceId"]
    assert _running()["ApplicationInstanceId"] == replacing["instance_id"]
    statuses = {i["ApplicationInstanceId"]: i["Status"] for i in _instances()}
    assert statuses[first_instance] == "REMOVAL_SUCCEEDED"
    listed = CliRunner().invoke(app, ["status", "--config", str(CONFIG)])
    assert listed.exit_code == 0 and all(n in listed.stdout for n in (name, "model-run-fails", "model-run-replaces"))
    assert f"1.0 {code['patch_version'][:12]}" in listed.stdout, "status shows the code package's version"
    assert _lock(target)["holder"] is None and _lock(target)["deployed"]["run"] == "model-run-replaces"
    print(f"\nthree local runs in {time.monotonic() - started:.1f} s")


def _lock(target: runs.Target) -> dict[str, Any]:
    artifacts = target.data_bucket.replace("-data-", "-artifacts-")
    body = boto3.client("s3").get_object(Bucket=artifacts, Key="locks/deployment.json")["Body"].read()
    return json.loads(body)  # type: ignore[no-any-return]


def _last_good(target: runs.Target) -> dict[str, Any]:
    artifacts = target.data_bucket.replace("-data-", "-artifacts-")
    body = boto3.client("s3").get_object(Bucket=artifacts, Key=f"deployments/{DEVICE}/last-good.json")["Body"].read()
    return json.loads(body)  # type: ignore[no-any-return]


def test_concurrent_runs_deploy_one_at_a_time_and_the_newest_wins(deployed: tuple[Emulator, runs.Target]) -> None:
    """Three runs started at once: one instance of the application at the end, the newest run's."""
    _, target = deployed
    model = (runs.progress(target, _first_run_arn(target)).output or {})["model"]["s3_uri"]
    arns = [runs.start(target, {"model": model}, f"concurrent-{i}") for i in range(3)]
    ended = [_wait(target, arn, timeout=180) for arn in arns]
    outcomes = {p.arn.rsplit(":", 1)[1]: (p.output or {}).get("summary", {}).get("status") for p in ended}
    assert all(p.status == "SUCCEEDED" for p in ended), [(p.status, p.error, p.cause) for p in ended]
    newest = max(ended, key=lambda p: p.started).arn.rsplit(":", 1)[1]
    assert outcomes[newest] == "SUCCEEDED", outcomes
    assert set(outcomes.values()) <= {"SUCCEEDED", "SUPERSEDED"}, outcomes
    active = [i for i in _instances() if i["Status"] not in ("REMOVAL_SUCCEEDED", "DEPLOYMENT_FAILED")]
    assert len(active) == 1 and active[0]["Tags"].get("panopipe:run") == newest, active
    assert _last_good(target)["run"] == newest
    assert _lock(target)["holder"] is None


def _first_run_arn(target: runs.Target) -> str:
    sfn = boto3.client("stepfunctions")
    executions = sfn.list_executions(stateMachineArn=target.state_machine_arn)["executions"]
    return str(min(executions, key=lambda e: e["startDate"])["executionArn"])


# --- raw images: the preparation step runs for real (same deployment) ---------------------------


def _upload_raw(target: runs.Target, folder: Path, name: str) -> str:
    """``<class>/`` folders, then the ``_READY`` marker (the trigger starts the run); the run's ARN."""
    s3 = boto3.client("s3", region_name=target.region)
    prefix = f"datasets/{name}/"
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        s3.upload_file(str(path), target.data_bucket, prefix + path.relative_to(folder).as_posix())
    marker = s3.put_object(Bucket=target.data_bucket, Key=f"{prefix}{READY_MARKER}", Body=b"")
    version = str(marker.get("VersionId") or marker["ETag"].strip('"'))
    run = runs.dataset_run_name(target, name, version)
    return f"{target.state_machine_arn.replace(':stateMachine:', ':execution:')}:{run}"


def _started(target: runs.Target, arn: str) -> None:
    sfn, deadline = boto3.client("stepfunctions", region_name=target.region), time.monotonic() + 30
    while arn not in [
        e["executionArn"] for e in sfn.list_executions(stateMachineArn=target.state_machine_arn)["executions"]
    ]:
        assert time.monotonic() < deadline, "the marker started no run"
        time.sleep(0.2)


def test_raw_images_are_prepared_then_trained_on(deployed: tuple[Emulator, runs.Target], tmp_path: Path) -> None:
    _, target = deployed
    arn = _upload_raw(target, data_set(tmp_path / "raw", per_class=12), "raw-1")  # dev: at least 10 per class
    _started(target, arn)

    run = _wait(target, arn, timeout=180)

    assert run.status == "SUCCEEDED", (run.error, run.cause)
    output: dict[str, Any] = run.output or {}
    assert output["preparation"]["status"] == "SUCCEEDED"
    assert output["preparation"]["images_before"] == {"empty": 12, "person": 12}
    prepared = output["preparation"]["output_uri"]
    assert output["source"]["channels"] == {"train": f"{prepared}train/", "validation": f"{prepared}validation/"}
    assert output["source"]["train_records"] == 2 * 10 * 3  # 10 training images per class, 2 variants each
    names = [s.name for s in run.steps]
    assert names.index("StartPreparation") < names.index("CheckPreparation") < names.index("StartTraining")
    bucket, key = prepared[5:].split("/", 1)
    s3 = boto3.client("s3", region_name=target.region)
    assert s3.head_object(Bucket=bucket, Key=f"{key}train/train.rec")["ContentLength"] > 0


def test_a_rejected_data_set_stops_the_run_with_the_reason(
    deployed: tuple[Emulator, runs.Target], tmp_path: Path
) -> None:
    _, target = deployed
    arn = _upload_raw(target, data_set(tmp_path / "raw", per_class=4), "raw-2")
    _started(target, arn)

    run = _wait(target, arn, timeout=180)

    assert (run.status, run.error) == ("FAILED", "PreparationFailed"), (run.error, run.cause)
    assert "data set rejected: class 'empty' has 4 usable images, fewer than preparation.min_images_per_class (10)" in (
        run.cause or ""
    )
    assert "StartTraining" not in [s.name for s in run.steps]


def readme_aws_scripts() -> list[str]:
    """The README's shell blocks that call the AWS CLI (indented blocks whose first line runs ``aws``)."""
    blocks: list[list[str]] = [[]]
    for line in (ROOT / "README.md").read_text().splitlines():
        if line.startswith("    ") and line.strip():
            blocks[-1].append(line[4:])
        elif blocks[-1]:
            blocks.append([])
    starts = re.compile(r"^(aws |[A-Z_]+=\$\(aws )")
    return ["\n".join(block) for block in blocks if block and starts.match(block[0])]


def test_every_aws_cli_command_of_the_readme_runs_as_written(
    deployed: tuple[Emulator, runs.Target], tmp_path: Path
) -> None:
    """The pinned AWS CLI against the local AWS, from a folder holding what the commands name."""
    import shutil
    import subprocess

    aws, target = deployed
    scripts = readme_aws_scripts()
    assert len(scripts) >= 2, scripts
    shutil.copytree(ROOT / "panopipe" / "samples" / "dataset", tmp_path / "people-2026-11")
    dataset = f"s3://{target.data_bucket}/datasets/people-2026-11/"
    (tmp_path / "input.json").write_text(json.dumps({"dataset": dataset}))
    env = {**aws.env(), "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(tmp_path)}
    for script in scripts:
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, f"{script}\n{result.stderr[-2000:]}"
    s3 = boto3.client("s3")
    assert s3.head_object(Bucket=target.data_bucket, Key="datasets/people-2026-11/_READY")["ContentLength"] == 0
    assert s3.list_objects_v2(Bucket=target.data_bucket, Prefix="datasets/people-2026-11/train/")["KeyCount"] >= 1
    names = {
        e["name"]
        for e in boto3.client("stepfunctions").list_executions(stateMachineArn=target.state_machine_arn)["executions"]
    }
    assert "my-run-1" in names


def test_the_cdk_cli_updates_and_destroys_the_deployed_stacks(deployed: tuple[Emulator, runs.Target]) -> None:
    """The change-set flow beyond create: a changed config updates in place, then everything is destroyed."""
    import subprocess

    aws, target = deployed
    local_mode.deploy(aws.endpoint, "us-east-1", CONFIG, poll_seconds=2, say=lambda _: None)
    sfn, cfn = boto3.client("stepfunctions"), boto3.client("cloudformation")
    definition = json.loads(sfn.describe_state_machine(stateMachineArn=target.state_machine_arn)["definition"])
    waits = [s["Seconds"] for s in definition["States"].values() if s["Type"] == "Wait"]
    assert waits and set(waits) == {2}, "the update changed the wait loops' interval"
    assert cfn.describe_stacks(StackName="panopipe-dev-pipeline")["Stacks"][0]["StackStatus"] == "UPDATE_COMPLETE"

    env = local_mode.cli_environment(aws.endpoint, "us-east-1")
    destroy = [str(local_mode.CDK), "destroy", "**", "--force", "--no-notices", "-c", f"config={CONFIG}"]
    result = subprocess.run(destroy, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    remaining = {s["StackName"] for s in cfn.list_stacks()["StackSummaries"] if s["StackStatus"] != "DELETE_COMPLETE"}
    assert not {n for n in remaining if n.startswith("panopipe-dev-")}, remaining
