"""The built-in image-classification stand-in: its checks, its RecordIO, and (marker ``ml``) real training.

The one ``ml`` test trains for real through the emulator in the ML environment (created on first
use: ``local_aws.ml.environment``), on a small generated sample; the others run without it.
"""

from __future__ import annotations

import io
import json
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import boto3
import pytest
from PIL import Image

from lambda_handlers.training import METRIC_VALUE_REGEX
from local_aws.emulator import Emulator
from local_aws.ml import builtin_image_classification as algorithm
from local_aws.ml import recordio
from local_aws.sagemaker_job_progress import SageMakerSettings
from panopipe.project import ROOT
from panopipe.samples.generate import CLASSES, generate_dataset

BUCKET = "builtin-training-test"
IMAGE = "811284229777.dkr.ecr.us-east-1.amazonaws.com/image-classification:1"
MXNET = "763104351884.dkr.ecr.us-east-1.amazonaws.com/mxnet-training:1.8-cpu-py37"
EXAMPLE = ROOT / "training" / "examples" / "mxnet_image_classifier.py"
HYPERPARAMETERS = {
    "num_classes": "2",
    "num_training_samples": "48",
    "image_shape": "3,28,28",
    "num_layers": "20",
    "epochs": "4",
    "mini_batch_size": "16",
    "augmentation_type": "crop",
}


def _credentials() -> dict[str, str]:
    return {"region_name": "us-east-1", "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def write_sample(folder: Path, per_class: int, size: int) -> dict[str, Path]:
    """Generated sample images as the built-in algorithm's train/validation RecordIO (1 in 4 validation)."""
    raw = generate_dataset(folder / "raw", per_class=per_class, seed=0, size=size)
    records: dict[str, list[bytes]] = {"train": [], "validation": []}
    for label, name in enumerate(CLASSES):
        for index, path in enumerate(sorted((raw / name).glob("*.png"))):
            channel = "validation" if index % 4 == 0 else "train"
            records[channel].append(recordio.pack(label, path.read_bytes(), len(records[channel])))
    files = {}
    for channel, payloads in records.items():
        files[channel] = folder / f"{channel}.rec"
        recordio.write(files[channel], payloads)
    return files


# --- without the ML environment -------------------------------------------------------------------


def test_recordio_round_trips_labels_ids_and_payloads_that_contain_the_magic_number(tmp_path: Path) -> None:
    tricky = b"before" + recordio.MAGIC.to_bytes(4, "little") + b"after"
    recordio.write(tmp_path / "a.rec", [recordio.pack(1, b"png-bytes", 7), recordio.pack([0.0, 2.0], tricky, 8)])
    assert recordio.read(tmp_path / "a.rec") == [
        recordio.ImageRecord(1.0, 7, b"png-bytes"),
        recordio.ImageRecord((0.0, 2.0), 8, tricky),
    ]
    data = (tmp_path / "a.rec").read_bytes()
    assert data[:4] == recordio.MAGIC.to_bytes(4, "little") and len(data) % 4 == 0


def test_the_algorithm_refuses_what_the_real_one_refuses() -> None:
    with pytest.raises(algorithm.ClientError, match="Additional hyperparameters are not allowed \\('learning_rte'"):
        algorithm.hyperparameters(HYPERPARAMETERS | {"learning_rte": "0.1"})
    with pytest.raises(algorithm.ClientError, match="num_training_samples"):
        algorithm.hyperparameters({"num_classes": "2"})
    with pytest.raises(algorithm.ClientError, match="20, 32, 44, 56 or 110"):
        algorithm.network_plan(18, 28)  # small images take the CIFAR-style depths
    assert algorithm.network_plan(20, 28) == ([3, 3, 3], [16, 16, 32, 64], False)
    assert algorithm.network_plan(18, 224) == ([2, 2, 2, 2], [64, 64, 128, 256, 512], False)
    assert algorithm.network_plan(50, 224)[2] is True
    assert algorithm.hyperparameters(HYPERPARAMETERS)["optimizer"] == "sgd"  # the documented default


def test_a_refused_hyperparameter_fails_the_job_with_the_algorithms_client_error(tmp_path: Path) -> None:
    files = write_sample(tmp_path, per_class=2, size=28)
    settings = SageMakerSettings(run_training=True, jobs_dir=tmp_path / "jobs", training_python=Path(sys.executable))
    with Emulator(sagemaker=settings) as aws:
        job = _train(aws, files, "refused", HYPERPARAMETERS | {"learning_rte": "0.1"}, timeout=60)
    assert job["TrainingJobStatus"] == "Failed"
    assert (
        job["FailureReason"]
        == "ClientError: Additional hyperparameters are not allowed ('learning_rte' was unexpected)"
    )


# --- real training --------------------------------------------------------------------------------


@pytest.mark.ml
def test_the_built_in_stand_in_and_the_example_script_really_train(tmp_path: Path) -> None:
    """Both kinds of job at once: the built-in algorithm's stand-in and the repo's script-mode example."""
    files = write_sample(tmp_path, per_class=32, size=28)
    with Emulator(sagemaker=SageMakerSettings(run_training=True, jobs_dir=tmp_path / "jobs")) as aws:
        s3 = boto3.client("s3", endpoint_url=aws.endpoint, **_credentials())
        source = io.BytesIO()
        with tarfile.open(fileobj=source, mode="w:gz") as archive:
            archive.add(EXAMPLE, arcname=EXAMPLE.name)
        _start(aws, files, "builtin", HYPERPARAMETERS)
        s3.put_object(Bucket=BUCKET, Key="code/sourcedir.tar.gz", Body=source.getvalue())
        script = {"epochs": "2", "sagemaker_program": EXAMPLE.name}
        script["sagemaker_submit_directory"] = f"s3://{BUCKET}/code/sourcedir.tar.gz"
        metric = [{"Name": "validation:accuracy", "Regex": f"validation:accuracy={METRIC_VALUE_REGEX}"}]
        _start(aws, files, "script", script, image=MXNET, metric_definitions=metric)  # as the pipeline asks
        job, scripted = _wait(aws, "builtin", timeout=600), _wait(aws, "script", timeout=600)
        body = s3.get_object(Bucket=BUCKET, Key="out/builtin/output/model.tar.gz")["Body"].read()
        exported = s3.get_object(Bucket=BUCKET, Key="out/script/output/model.tar.gz")["Body"].read()
    assert scripted["TrainingJobStatus"] == "Completed", scripted.get("FailureReason")
    assert [m["MetricName"] for m in scripted["FinalMetricDataList"]] == ["validation:accuracy"]
    with tarfile.open(fileobj=io.BytesIO(exported)) as archive:
        assert sorted(archive.getnames()) == ["model-0000.params", "model-symbol.json"]

    log = (tmp_path / "jobs" / "builtin" / "training.log").read_text()
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    assert "Epoch[3] Validation-accuracy=" in log
    metrics = {m["MetricName"]: m["Value"] for m in job["FinalMetricDataList"]}
    assert set(metrics) == {
        "train:accuracy",
        "validation:accuracy",
        "train:accuracy:epoch",
        "validation:accuracy:epoch",
    }
    assert 0.0 <= metrics["validation:accuracy"] <= 1.0
    with tarfile.open(fileobj=io.BytesIO(body)) as archive:
        assert sorted(archive.getnames()) == [
            "image-classification-0000.params",
            "image-classification-symbol.json",
            "model-shapes.json",
        ]
        shapes = json.load(archive.extractfile("model-shapes.json"))  # type: ignore[arg-type]
        graph = json.load(archive.extractfile("image-classification-symbol.json"))  # type: ignore[arg-type]
    assert shapes == [{"shape": [1, 3, 28, 28], "name": "data"}]
    names = {node["name"] for node in graph["nodes"]}
    assert {"data", "bn_data", "conv0", "stage3_unit3_conv2", "fc1", "softmax"} <= names


def _train(aws: Emulator, files: dict[str, Path], name: str, hyperparameters: dict[str, str], timeout: float) -> Any:
    _start(aws, files, name, hyperparameters)
    return _wait(aws, name, timeout)


def _start(
    aws: Emulator,
    files: dict[str, Path],
    name: str,
    hyperparameters: dict[str, str],
    image: str = IMAGE,
    metric_definitions: list[dict[str, str]] | None = None,
) -> None:
    s3 = boto3.client("s3", endpoint_url=aws.endpoint, **_credentials())
    s3.create_bucket(Bucket=BUCKET)
    for channel, path in files.items():
        s3.put_object(Bucket=BUCKET, Key=f"data/{channel}/{path.name}", Body=path.read_bytes())
    algorithm: dict[str, Any] = {"TrainingImage": image, "TrainingInputMode": "File"}
    if metric_definitions:
        algorithm["MetricDefinitions"] = metric_definitions
    sagemaker = boto3.client("sagemaker", endpoint_url=aws.endpoint, **_credentials())
    sagemaker.create_training_job(
        TrainingJobName=name,
        AlgorithmSpecification=algorithm,
        RoleArn="arn:aws:iam::123456789012:role/sagemaker",
        HyperParameters=hyperparameters,
        InputDataConfig=[
            {
                "ChannelName": channel,
                "ContentType": "application/x-recordio",
                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/data/{channel}/"}},
            }
            for channel in files
        ],
        OutputDataConfig={"S3OutputPath": f"s3://{BUCKET}/out/"},
        ResourceConfig={"InstanceType": "ml.g4dn.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30},
        StoppingCondition={"MaxRuntimeInSeconds": 3600},
    )


def _wait(aws: Emulator, name: str, timeout: float) -> Any:
    sagemaker = boto3.client("sagemaker", endpoint_url=aws.endpoint, **_credentials())
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = sagemaker.describe_training_job(TrainingJobName=name)
        if job["TrainingJobStatus"] not in ("InProgress", "Stopping"):
            return job
        time.sleep(0.2)
    raise AssertionError(f"{name} still running after {timeout} s")


def test_generated_images_are_what_the_records_hold(tmp_path: Path) -> None:
    files = write_sample(tmp_path, per_class=2, size=28)
    first = recordio.read(files["validation"])[0]
    with Image.open(io.BytesIO(first.image)) as image:
        assert (image.size, first.label) == ((28, 28), 0.0)


def test_a_channel_smaller_than_a_mini_batch_is_a_client_error(tmp_path: Path) -> None:
    files = write_sample(tmp_path, per_class=2, size=28)
    config = tmp_path / "job" / "input" / "config"
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text(json.dumps(HYPERPARAMETERS))
    channels = {"train": {"ContentType": "application/x-recordio"}, "validation": {}}
    (config / "inputdataconfig.json").write_text(json.dumps(channels))
    for channel, path in files.items():
        (tmp_path / "job" / "input" / "data" / channel).mkdir(parents=True)
        (tmp_path / "job" / "input" / "data" / channel / path.name).write_bytes(path.read_bytes())
    with pytest.raises(algorithm.ClientError, match=r"Channel train: 2 images, fewer than mini_batch_size \(16\)"):
        algorithm.train(tmp_path / "job")
