"""Processing jobs in the local AWS: processing/prepare.py runs for real, as SageMaker Processing runs it."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from lambda_handlers.dataset_records import count_recordio
from local_aws import sagemaker_processing as sp
from local_aws.emulator import Emulator
from tests.conftest import ROOT
from tests.test_prepare import data_set

SCRIPT = (ROOT / "processing" / "prepare.py").read_bytes()
ARGUMENTS = [
    *("--input", "/opt/ml/processing/input/data", "--output", "/opt/ml/processing/output"),
    *("--message-file", "/opt/ml/output/message"),
    *("--classes", "empty,person", "--width", "64", "--height", "48", "--min-images-per-class", "3"),
]


class Store:
    """An in-memory S3."""

    def __init__(self) -> None:
        self.data: dict[tuple[str, str], bytes] = {}
        self.keys: dict[tuple[str, str], str | None] = {}

    def objects(self, bucket: str, prefix: str) -> Iterator[tuple[str, bytes]]:
        for (b, key), body in sorted(self.data.items()):
            if b == bucket and key.startswith(prefix):
                yield key, body

    def put(self, bucket: str, key: str, body: bytes, kms_key_id: str | None) -> None:
        self.data[(bucket, key)] = body
        self.keys[(bucket, key)] = kms_key_id


def request(name: str = "prep-1") -> dict[str, Any]:
    def s3_input(input_name: str, uri: str, local: str) -> dict[str, Any]:
        return {"InputName": input_name, "S3Input": {"S3Uri": uri, "LocalPath": local, "S3DataType": "S3Prefix"}}

    return {
        "ProcessingJobName": name,
        "AppSpecification": {
            "ImageUri": "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.3.0-cpu-py311",
            "ContainerEntrypoint": ["python3", "/opt/ml/processing/input/code/prepare.py"],
            "ContainerArguments": ARGUMENTS,
        },
        "ProcessingInputs": [
            s3_input("code", "s3://artifacts/code/abc/", "/opt/ml/processing/input/code"),
            s3_input("data", "s3://data/datasets/raw/", "/opt/ml/processing/input/data"),
        ],
        "ProcessingOutputConfig": {
            "Outputs": [
                {
                    "OutputName": "prepared",
                    "S3Output": {
                        "S3Uri": "s3://artifacts/runs/r1/prepared/",
                        "LocalPath": "/opt/ml/processing/output",
                        "S3UploadMode": "EndOfJob",
                    },
                }
            ],
            "KmsKeyId": "arn:aws:kms:us-east-1:123456789012:key/k",
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": 600},
    }


def stocked(tmp_path: Path, per_class: int = 4) -> Store:
    store = Store()
    store.put("artifacts", "code/abc/prepare.py", SCRIPT, None)
    for path in sorted(p for p in data_set(tmp_path / "raw", per_class).rglob("*") if p.is_file()):
        store.put("data", f"datasets/raw/{path.relative_to(tmp_path / 'raw').as_posix()}", path.read_bytes(), None)
    return store


def python() -> Path:
    return Path(sys.executable)  # numpy and Pillow, as in the image (the emulator uses the ML environment's)


def test_the_command_maps_opt_ml_and_runs_python3_as_the_ml_python(tmp_path: Path) -> None:
    app = {
        "ContainerEntrypoint": ["python3", "/opt/ml/processing/input/code/x.py"],
        "ContainerArguments": ["--a", "/opt/ml"],
    }

    assert sp.command(app, tmp_path, Path("/ml/bin/python")) == [
        "/ml/bin/python",
        f"{tmp_path}/processing/input/code/x.py",
        "--a",
        str(tmp_path),
    ]


def test_a_job_downloads_its_inputs_runs_and_uploads_its_outputs(tmp_path: Path) -> None:
    store = stocked(tmp_path)

    outcome = sp.run_processing_job(request(), store, tmp_path / "job", python)

    assert outcome == sp.Outcome("Completed")
    prefix = "runs/r1/prepared/"
    written = {key for (bucket, key) in store.data if bucket == "artifacts" and key.startswith(prefix)}
    assert written == {f"{prefix}report.json", f"{prefix}train/train.rec", f"{prefix}validation/validation.rec"}
    report = json.loads(store.data[("artifacts", f"{prefix}report.json")])
    assert count_recordio([store.data[("artifacts", f"{prefix}train/train.rec")]]) == report["train_records"] == 18
    assert store.keys[("artifacts", f"{prefix}report.json")] == "arn:aws:kms:us-east-1:123456789012:key/k"


def test_a_rejected_data_set_fails_the_job_with_its_exit_message(tmp_path: Path) -> None:
    store = stocked(tmp_path, per_class=2)

    outcome = sp.run_processing_job(request(), store, tmp_path / "job", python)

    assert outcome.status == "Failed"
    assert outcome.failure_reason == sp.ALGORITHM_ERROR
    assert outcome.exit_message == (
        "data set rejected: class 'empty' has 2 usable images, fewer than preparation.min_images_per_class (3)"
    )
    assert not [key for (bucket, key) in store.data if key.startswith("runs/")]  # nothing uploaded
    assert "data set rejected" in (tmp_path / "job/log.txt").read_text()


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (
            lambda r: r["ProcessingInputs"][1]["S3Input"].update(S3DataType="ManifestFile"),
            "ClientError: input data: the local AWS supports only S3Prefix in File mode",
        ),
        (
            lambda r: r["ProcessingInputs"][1]["S3Input"].update(S3Uri="s3://data/nothing/"),
            "ClientError: input data: no objects under s3://data/nothing/",
        ),
        (lambda r: r["AppSpecification"].pop("ContainerEntrypoint"), "ClientError: the local AWS runs only jobs with"),
    ],
    ids=["manifest input", "empty input", "no entrypoint"],
)
def test_what_the_local_aws_cannot_run_fails_with_a_reason(tmp_path: Path, change: Any, reason: str) -> None:
    given = request()
    change(given)

    outcome = sp.run_processing_job(given, stocked(tmp_path), tmp_path / "job", python)

    assert outcome.status == "Failed" and (outcome.failure_reason or "").startswith(reason)


def test_a_job_past_its_max_runtime_is_stopped(tmp_path: Path) -> None:
    store = stocked(tmp_path)
    store.put("artifacts", "code/abc/prepare.py", b"import time\ntime.sleep(30)\n", None)
    given = request()
    given["StoppingCondition"] = {"MaxRuntimeInSeconds": 1}

    started = time.monotonic()
    outcome = sp.run_processing_job(given, store, tmp_path / "job", python)

    assert outcome.status == "Stopped" and "MaxRuntimeExceeded" in (outcome.failure_reason or "")
    assert time.monotonic() - started < 10


# --- in the emulator -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    with Emulator() as running:
        yield running


def _client(service: str, emulator: Emulator) -> Any:
    return boto3.client(
        service,
        endpoint_url=emulator.endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def _until_done(sagemaker: Any, name: str) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while True:
        job: dict[str, Any] = sagemaker.describe_processing_job(ProcessingJobName=name)
        if job["ProcessingJobStatus"] not in ("InProgress", "Stopping") or time.monotonic() > deadline:
            return job
        time.sleep(0.2)


@pytest.mark.parametrize(("per_class", "status"), [(4, "Completed"), (2, "Failed")])
def test_the_emulator_runs_processing_jobs(emulator: Emulator, tmp_path: Path, per_class: int, status: str) -> None:
    s3, sagemaker = _client("s3", emulator), _client("sagemaker", emulator)
    for bucket in ("artifacts", "data"):
        s3.create_bucket(Bucket=bucket)
    for (bucket, key), body in stocked(tmp_path, per_class).data.items():  # a data set per case
        s3.put_object(Bucket=bucket, Key=key.replace("datasets/raw/", f"datasets/raw{per_class}/"), Body=body)
    given = request(f"prep-{per_class}")
    given["ProcessingInputs"][1]["S3Input"]["S3Uri"] = f"s3://data/datasets/raw{per_class}/"
    given["ProcessingOutputConfig"].pop("KmsKeyId")
    sagemaker.create_processing_job(
        **given,
        RoleArn="arn:aws:iam::123456789012:role/sagemaker",
        ProcessingResources={
            "ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.xlarge", "VolumeSizeInGB": 30}
        },
    )

    job = _until_done(sagemaker, given["ProcessingJobName"])
    with pytest.raises(ClientError, match="ResourceInUse"):
        sagemaker.create_processing_job(
            **given,
            RoleArn="arn:aws:iam::123456789012:role/sagemaker",
            ProcessingResources={
                "ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.xlarge", "VolumeSizeInGB": 30}
            },
        )

    assert job["ProcessingJobStatus"] == status
    if status == "Completed":
        body = s3.get_object(Bucket="artifacts", Key="runs/r1/prepared/report.json")["Body"].read()
        assert json.loads(body)["train_records"] == 18
    else:
        assert job["FailureReason"] == sp.ALGORITHM_ERROR
        assert job["ExitMessage"].startswith("data set rejected: class 'empty' has 2 usable images")
