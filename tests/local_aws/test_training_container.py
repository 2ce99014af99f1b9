"""Training jobs that really run in the emulator: the container contract, metrics from the log, Failed, Stopped.

Script-mode jobs here run a tiny script with this venv's python (``SageMakerSettings.training_python``)
so that the contract is tested without the ML environment; the built-in algorithm's stand-in really
trains in the one ``ml``-marked test (tests/local_aws/test_training_builtin.py).
"""

from __future__ import annotations

import gzip
import io
import json
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from local_aws.emulator import Emulator
from local_aws.sagemaker_job_container import BUILTIN_METRIC_DEFINITIONS, image_repository, parse_metrics, tar_gz
from local_aws.sagemaker_job_progress import SageMakerSettings
from panopipe.config.training_schema import BUILTIN_METRICS

BUCKET = "training-container-test"
ROLE = "arn:aws:iam::123456789012:role/sagemaker"
REGISTRY = "763104351884.dkr.ecr.us-east-1.amazonaws.com"
MXNET = f"{REGISTRY}/mxnet-training:1.8-cpu-py37"

SCRIPT = r"""
import argparse, json, os, sys, time
from pathlib import Path

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int)
parser.add_argument("--mode", default="ok")
args = parser.parse_args()
seen = {name: value for name, value in os.environ.items() if name.startswith(("SM_", "AWS_ENDPOINT"))}
seen["argv"] = sys.argv[1:]
seen["cwd"] = os.getcwd()
train = Path(os.environ["SM_CHANNEL_TRAIN"])
seen["files"] = sorted(str(p.relative_to(train)) for p in train.rglob("*") if p.is_file())
Path(os.environ["SM_OUTPUT_DATA_DIR"], "env.json").write_text(json.dumps(seen))
if args.mode == "sleep":
    Path(os.environ["SM_MODEL_DIR"], "pid").write_text(str(os.getpid()))
    time.sleep(60)
for epoch in range(args.epochs):
    print(f"epoch {epoch} val_acc={0.5 + epoch / 10:.2f}", flush=True)
if args.mode == "crash":
    raise ValueError("the data set has no validation images")
Path(os.environ["SM_MODEL_DIR"], "model-symbol.json").write_text("{}")
Path(os.environ["SM_MODEL_DIR"], "nested").mkdir()
Path(os.environ["SM_MODEL_DIR"], "nested", "model-0000.params").write_bytes(b"weights")
"""


def _credentials() -> dict[str, str]:
    return {"region_name": "us-east-1", "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


@pytest.fixture(scope="module")
def jobs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("jobs")


@pytest.fixture(scope="module")
def aws(jobs: Path) -> Iterator[Emulator]:
    settings = SageMakerSettings(run_training=True, jobs_dir=jobs, training_python=Path(sys.executable))
    with Emulator(sagemaker=settings) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def s3(aws: Emulator) -> Any:
    client = boto3.client("s3", endpoint_url=aws.endpoint, **_credentials())
    client.create_bucket(Bucket=BUCKET)
    client.put_object(Bucket=BUCKET, Key="data/train/a.rec", Body=b"A")
    client.put_object(Bucket=BUCKET, Key="data/train/sub/b.rec", Body=b"B")
    client.put_object(Bucket=BUCKET, Key="data/validation/c.rec", Body=b"C")
    client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    client.put_object(Bucket=BUCKET, Key="data/train/deleted.rec", Body=b"D")
    client.delete_object(Bucket=BUCKET, Key="data/train/deleted.rec")  # a delete marker: not downloaded
    source = io.BytesIO()
    with tarfile.open(fileobj=source, mode="w:gz") as archive:
        info = tarfile.TarInfo("train.py")
        info.size = len(SCRIPT.encode())
        archive.addfile(info, io.BytesIO(SCRIPT.encode()))
    client.put_object(Bucket=BUCKET, Key="code/sourcedir.tar.gz", Body=source.getvalue())
    return client


@pytest.fixture(scope="module")
def sagemaker(aws: Emulator, s3: Any) -> Any:
    return boto3.client("sagemaker", endpoint_url=aws.endpoint, **_credentials())


def start(sagemaker: Any, name: str, *, mode: str = "ok", image: str = MXNET, **overrides: Any) -> None:
    request: dict[str, Any] = {
        "TrainingJobName": name,
        "AlgorithmSpecification": {
            "TrainingImage": image,
            "TrainingInputMode": "File",
            "MetricDefinitions": [{"Name": "validation:accuracy", "Regex": r"val_acc=([0-9.]+)"}],
        },
        "RoleArn": ROLE,
        "HyperParameters": {
            "epochs": "3",
            "mode": mode,
            "sagemaker_program": "train.py",
            "sagemaker_submit_directory": f"s3://{BUCKET}/code/sourcedir.tar.gz",
            "sagemaker_region": "us-east-1",
        },
        "InputDataConfig": [
            {"ChannelName": channel, "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": uri}}}
            for channel, uri in (
                ("train", f"s3://{BUCKET}/data/train/"),
                ("validation", f"s3://{BUCKET}/data/validation"),
            )
        ],
        "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/runs/r1/training/"},
        "ResourceConfig": {"InstanceType": "ml.c5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30},
        "StoppingCondition": {"MaxRuntimeInSeconds": 600},
    }
    request.update(overrides)
    sagemaker.create_training_job(**request)


def wait(sagemaker: Any, name: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job: dict[str, Any] = sagemaker.describe_training_job(TrainingJobName=name)
        if job["TrainingJobStatus"] not in ("InProgress", "Stopping"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"{name} still running after {timeout} s")


def test_a_script_mode_job_runs_with_the_container_contract_and_reports_its_log_metrics(
    sagemaker: Any, s3: Any, jobs: Path, aws: Emulator
) -> None:
    start(sagemaker, "contract")
    assert sagemaker.describe_training_job(TrainingJobName="contract")["TrainingJobStatus"] == "InProgress"
    job = wait(sagemaker, "contract")
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    # the last value the log shows, by the job's own metric definition
    assert [(m["MetricName"], m["Value"]) for m in job["FinalMetricDataList"]] == [("validation:accuracy", 0.7)]

    root = jobs / "contract"
    config = root / "input" / "config"
    assert json.loads((config / "hyperparameters.json").read_text())["epochs"] == "3"  # strings, as SageMaker writes
    assert json.loads((config / "inputdataconfig.json").read_text())["train"]["TrainingInputMode"] == "File"
    assert json.loads((config / "resourceconfig.json").read_text())["hosts"] == ["algo-1"]
    assert "epoch 2 val_acc=0.70" in (root / "training.log").read_text()
    logs = boto3.client("logs", endpoint_url=aws.endpoint, **_credentials())
    (stream,) = logs.describe_log_streams(logGroupName="/aws/sagemaker/TrainingJobs", logStreamNamePrefix="contract/")[
        "logStreams"
    ]
    assert stream["logStreamName"].startswith("contract/algo-1-")
    events = logs.get_log_events(logGroupName="/aws/sagemaker/TrainingJobs", logStreamName=stream["logStreamName"])
    assert "epoch 2 val_acc=0.70" in [event["message"] for event in events["events"]]

    seen = json.loads((root / "output" / "data" / "env.json").read_text())
    assert seen["SM_MODEL_DIR"] == str(root / "model")
    assert seen["SM_CHANNEL_TRAIN"] == str(root / "input" / "data" / "train")
    assert seen["SM_CHANNEL_VALIDATION"] == str(root / "input" / "data" / "validation")
    assert seen["SM_OUTPUT_DATA_DIR"] == str(root / "output" / "data")
    assert json.loads(seen["SM_CHANNELS"]) == ["train", "validation"]
    assert json.loads(seen["SM_HPS"]) == {"epochs": 3, "mode": "ok"}  # sagemaker_* are the toolkit's, not the script's
    assert seen["SM_HP_EPOCHS"] == "3" and int(seen["SM_NUM_CPUS"]) >= 1
    assert seen["argv"] == ["--epochs", "3", "--mode", "ok"]
    assert seen["cwd"] == str(root / "code")
    assert seen["files"] == ["a.rec", "sub/b.rec"]  # keys relative to the channel's prefix
    assert seen["AWS_ENDPOINT_URL"] == aws.endpoint  # the job's AWS is the local one

    artifact = job["ModelArtifacts"]["S3ModelArtifacts"]
    assert artifact == f"s3://{BUCKET}/runs/r1/training/contract/output/model.tar.gz"
    body = s3.get_object(Bucket=BUCKET, Key="runs/r1/training/contract/output/model.tar.gz")["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as archive:
        assert sorted(archive.getnames()) == ["model-symbol.json", "nested/model-0000.params"]
    output = s3.get_object(Bucket=BUCKET, Key="runs/r1/training/contract/output/output.tar.gz")["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(output)) as archive:
        assert archive.getnames() == ["env.json"]


def test_a_job_that_exits_non_zero_fails_with_the_logs_last_lines(sagemaker: Any, s3: Any) -> None:
    start(sagemaker, "crashing", mode="crash")
    job = wait(sagemaker, "crashing")
    assert job["TrainingJobStatus"] == "Failed"
    reason = job["FailureReason"]
    assert reason.startswith("AlgorithmError: ExecuteUserScriptError:\nExitCode 1\n")
    assert "ValueError: the data set has no validation images" in reason
    assert "ModelArtifacts" not in job or not job["ModelArtifacts"]
    listed = s3.list_objects_v2(Bucket=BUCKET, Prefix="runs/r1/training/crashing/")
    assert listed.get("KeyCount", 0) == 0  # no model of a failed job


def test_stop_training_job_kills_the_process(sagemaker: Any, jobs: Path) -> None:
    start(sagemaker, "sleeper", mode="sleep")
    pid_file = jobs / "sleeper" / "model" / "pid"
    deadline = time.monotonic() + 30
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    pid = int(pid_file.read_text())
    running = sagemaker.describe_training_job(TrainingJobName="sleeper")
    assert (running["TrainingJobStatus"], running["SecondaryStatus"]) == ("InProgress", "Training")
    sagemaker.stop_training_job(TrainingJobName="sleeper")
    job = wait(sagemaker, "sleeper")
    assert job["TrainingJobStatus"] == "Stopped"
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid)


def test_a_job_running_past_its_max_runtime_is_stopped(sagemaker: Any) -> None:
    start(sagemaker, "overtime", mode="sleep", StoppingCondition={"MaxRuntimeInSeconds": 1})
    job = wait(sagemaker, "overtime")
    assert (job["TrainingJobStatus"], job["SecondaryStatus"]) == ("Stopped", "MaxRuntimeExceeded")


def test_what_the_local_aws_cannot_run_fails_with_the_reason(sagemaker: Any) -> None:
    start(sagemaker, "torch", image=f"{REGISTRY}/pytorch-training:2.1-cpu-py310")
    assert "cannot run the training image" in wait(sagemaker, "torch")["FailureReason"]
    start(
        sagemaker,
        "empty-channel",
        InputDataConfig=[
            {
                "ChannelName": "train",
                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/nothing/"}},
            }
        ],
    )
    job = wait(sagemaker, "empty-channel")
    assert job["TrainingJobStatus"] == "Failed"
    assert job["FailureReason"].startswith('ClientError: No S3 objects found under S3 URL "s3://')


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


# --- pure parts -----------------------------------------------------------------------------------


def test_metrics_are_the_last_match_of_each_definition_and_unmatched_ones_are_absent() -> None:
    log = "Epoch[0] Train-accuracy=0.5\nEpoch[0] Validation-accuracy=0.25\nEpoch[1] Validation-accuracy=9.5e-1\n"
    definitions = BUILTIN_METRIC_DEFINITIONS["image-classification"] + [{"Name": "loss", "Regex": "loss=([0-9.]+)"}]
    assert parse_metrics(log, definitions) == {
        "train:accuracy": 0.5,
        "validation:accuracy": 0.95,
        "train:accuracy:epoch": 0.5,
        "validation:accuracy:epoch": 0.95,
    }
    # the names the config accepts for the built-in algorithm are the ones it reports
    assert {d["Name"] for d in definitions[:4]} == set(BUILTIN_METRICS["image-classification"])


def test_the_image_names_what_runs() -> None:
    assert image_repository(f"{REGISTRY}/image-classification:1") == "image-classification"
    assert image_repository(f"{REGISTRY}/mxnet-training@sha256:abc") == "mxnet-training"


def test_the_model_tar_holds_the_model_dirs_files_relative_and_reproducibly(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.json").write_text("{}")
    (tmp_path / "sub" / "b.params").write_bytes(b"x")
    body = tar_gz(tmp_path)
    assert body == tar_gz(tmp_path)
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(body))) as archive:
        assert archive.getnames() == ["a.json", "sub/b.params"]


def test_a_manifest_file_channel_downloads_the_keys_it_lists(sagemaker: Any, s3: Any, jobs: Path) -> None:
    manifest = [{"prefix": f"s3://{BUCKET}/data/"}, "train/a.rec", "validation/c.rec"]
    s3.put_object(Bucket=BUCKET, Key="manifests/train.manifest", Body=json.dumps(manifest).encode())
    uri = f"s3://{BUCKET}/manifests/train.manifest"
    channel = {"ChannelName": "train", "DataSource": {"S3DataSource": {"S3DataType": "ManifestFile", "S3Uri": uri}}}
    start(sagemaker, "manifest", InputDataConfig=[channel])
    assert wait(sagemaker, "manifest")["TrainingJobStatus"] == "Completed"
    seen = json.loads((jobs / "manifest" / "output" / "data" / "env.json").read_text())
    assert seen["files"] == ["train/a.rec", "validation/c.rec"]


def test_the_emulator_command_runs_training_jobs_unless_told_not_to() -> None:
    from local_aws.emulator import _parser

    assert _parser().parse_args([]).sagemaker_training == "run"
    assert _parser().parse_args(["--sagemaker-training", "placeholder"]).sagemaker_training == "placeholder"
