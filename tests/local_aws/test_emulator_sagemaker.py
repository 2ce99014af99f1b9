"""The emulator's SageMaker jobs: InProgress → Completed with the artifact where a real job writes it,
Failed on request, Stopping → Stopped."""

from __future__ import annotations

import gzip
import io
import tarfile
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from local_aws.emulator import Emulator
from local_aws.emulator_process import control
from local_aws.sagemaker_job_artifacts import compilation_target, compiled_model_uri
from local_aws.sagemaker_job_progress import JobRecord, JobTracker, SageMakerSettings

BUCKET = "aws-panorama-test-artifacts"
ROLE = "arn:aws:iam::123456789012:role/sagemaker"
IMAGE = "811284229777.dkr.ecr.us-east-1.amazonaws.com/image-classification:1"


@pytest.fixture(scope="module")
def aws() -> Iterator[Emulator]:
    settings = SageMakerSettings(in_progress_describes=2, fail_jobs={"doomed"})
    with Emulator(sagemaker=settings) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def sagemaker(aws: Emulator) -> Any:
    return boto3.client("sagemaker", endpoint_url=aws.endpoint, **_credentials())


@pytest.fixture(scope="module")
def s3(aws: Emulator) -> Any:
    client = boto3.client("s3", endpoint_url=aws.endpoint, **_credentials())
    client.create_bucket(Bucket=BUCKET)
    return client


def _credentials() -> dict[str, str]:
    return {"region_name": "us-east-1", "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def create_training_job(
    sagemaker: Any,
    name: str,
    metric_definitions: list[dict[str, str]] | None = None,
    channel: dict[str, str] | None = None,
) -> None:
    algorithm: dict[str, Any] = {"TrainingImage": IMAGE, "TrainingInputMode": "File"}
    if metric_definitions:
        algorithm["MetricDefinitions"] = metric_definitions
    sagemaker.create_training_job(
        TrainingJobName=name,
        AlgorithmSpecification=algorithm,
        RoleArn=ROLE,
        HyperParameters={"num_classes": "2", "epochs": "10"},
        InputDataConfig=[
            {
                "ChannelName": "train",
                "DataSource": {
                    "S3DataSource": channel or {"S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/data/train/"}
                },
            }
        ],
        OutputDataConfig={"S3OutputPath": f"s3://{BUCKET}/runs/r1/training/", "KmsKeyId": "alias/test"},
        ResourceConfig={"InstanceType": "ml.g4dn.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 50},
        StoppingCondition={"MaxRuntimeInSeconds": 3600},
    )


def create_compilation_job(sagemaker: Any, name: str, model_uri: str, output: dict[str, Any] | None = None) -> None:
    sagemaker.create_compilation_job(
        CompilationJobName=name,
        RoleArn=ROLE,
        InputConfig={"S3Uri": model_uri, "DataInputConfig": '{"data":[1,3,224,224]}', "Framework": "MXNET"},
        OutputConfig=output
        or {"S3OutputLocation": f"s3://{BUCKET}/runs/r1/compilation/", "TargetDevice": "jetson_xavier"},
        StoppingCondition={"MaxRuntimeInSeconds": 900},
    )


def read_tar(s3: Any, uri: str) -> dict[str, bytes]:
    bucket, key = uri.removeprefix("s3://").split("/", 1)
    body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(body))) as archive:
        return {member.name: archive.extractfile(member).read() for member in archive.getmembers()}  # type: ignore[union-attr]


def job_arn(kind: str, name: str) -> str:
    return f"arn:aws:sagemaker:us-east-1:123456789012:{kind}-job/{name}"


def test_training_job_progresses_and_writes_its_model_artifact(sagemaker: Any, s3: Any) -> None:
    create_training_job(sagemaker, "train-ok")
    for _ in range(2):
        job = sagemaker.describe_training_job(TrainingJobName="train-ok")
        assert job["TrainingJobStatus"] == "InProgress"
        assert "ModelArtifacts" not in job and "TrainingEndTime" not in job and "FinalMetricDataList" not in job
    job = sagemaker.describe_training_job(TrainingJobName="train-ok")
    assert job["TrainingJobStatus"] == "Completed" and job["SecondaryStatus"] == "Completed"
    artifact = f"s3://{BUCKET}/runs/r1/training/train-ok/output/model.tar.gz"
    assert job["ModelArtifacts"]["S3ModelArtifacts"] == artifact
    assert "model-info.json" in read_tar(s3, artifact)
    metrics = {m["MetricName"]: m["Value"] for m in job["FinalMetricDataList"]}
    assert metrics["validation:accuracy"] == pytest.approx(0.93)  # the built-in algorithm's gate metric
    assert "MetricDefinitions" not in job["AlgorithmSpecification"]  # not moto's made-up test:dcg
    summaries = sagemaker.list_training_jobs(NameContains="train-ok")["TrainingJobSummaries"]
    assert summaries[0]["TrainingJobStatus"] == "Completed"


def test_training_metrics_follow_metric_definitions_and_run_time_requests(aws: Emulator, sagemaker: Any) -> None:
    definitions = [{"Name": "val_acc", "Regex": "val_acc=([0-9.]+)"}]
    control(aws.endpoint, "sagemaker/metrics", {"job": "train-low", "metrics": {"val_acc": 0.42}})
    create_training_job(sagemaker, "train-low", definitions)
    create_training_job(sagemaker, "train-default", definitions)
    for name, expected in (("train-low", 0.42), ("train-default", 0.93)):
        for _ in range(3):
            job = sagemaker.describe_training_job(TrainingJobName=name)
        assert job["AlgorithmSpecification"]["MetricDefinitions"] == definitions
        assert [(m["MetricName"], m["Value"]) for m in job["FinalMetricDataList"]] == [
            ("val_acc", pytest.approx(expected))
        ]


def test_a_taken_job_name_is_resource_in_use_like_in_sagemaker(sagemaker: Any) -> None:
    """moto replaces the job; SageMaker refuses, whatever the first job's status (here: still running)."""
    create_training_job(sagemaker, "train-twice")
    with pytest.raises(ClientError) as error:
        create_training_job(sagemaker, "train-twice")
    assert error.value.response["Error"]["Code"] == "ResourceInUse"
    assert error.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert error.value.response["Error"]["Message"] == (
        "Training job names must be unique within an AWS account and region, and a training job with this "
        f"name already exists ({job_arn('training', 'train-twice')})"
    )
    create_compilation_job(sagemaker, "neo-twice", f"s3://{BUCKET}/nowhere/model.tar.gz")
    with pytest.raises(ClientError) as error:
        create_compilation_job(sagemaker, "neo-twice", f"s3://{BUCKET}/elsewhere/model.tar.gz")
    assert error.value.response["Error"]["Code"] == "ResourceInUse"
    assert f"({job_arn('compilation', 'neo-twice')})" in error.value.response["Error"]["Message"]
    job = sagemaker.describe_compilation_job(CompilationJobName="neo-twice")
    assert job["InputConfig"]["S3Uri"] == f"s3://{BUCKET}/nowhere/model.tar.gz"  # the first job, not replaced


def test_training_job_fails_by_name_or_on_request(aws: Emulator, sagemaker: Any, s3: Any) -> None:
    create_training_job(sagemaker, "doomed-run")
    control(aws.endpoint, "sagemaker/fail", {"job": "train-requested", "reason": "AlgorithmError: out of memory"})
    create_training_job(sagemaker, "train-requested-1")
    for _ in range(3):
        doomed = sagemaker.describe_training_job(TrainingJobName="doomed-run")
        requested = sagemaker.describe_training_job(TrainingJobName="train-requested-1")
    assert doomed["TrainingJobStatus"] == "Failed" and doomed["FailureReason"].startswith("AlgorithmError")
    assert requested["TrainingJobStatus"] == "Failed"
    assert requested["FailureReason"] == "AlgorithmError: out of memory"
    assert "ModelArtifacts" not in requested
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix="runs/r1/training/train-requested-1/").get("KeyCount") == 0


def test_an_augmented_manifest_sent_as_a_manifest_file_fails_the_job(sagemaker: Any, s3: Any) -> None:
    """A Ground Truth manifest (JSON lines) sent as ManifestFile: SageMaker fails the job on its data."""
    s3.put_object(Bucket=BUCKET, Key="data/train.manifest", Body=b'{"source-ref": "s3://b/a.jpg", "class": 0}\n')
    s3.put_object(Bucket=BUCKET, Key="data/keys.manifest", Body=b'[{"prefix": "s3://b/"}, "a.jpg"]')
    for name, key in (("train-augmented", "train.manifest"), ("train-keys", "keys.manifest")):
        channel = {"S3DataType": "ManifestFile", "S3Uri": f"s3://{BUCKET}/data/{key}"}
        create_training_job(sagemaker, name, channel=channel)
    for _ in range(3):
        augmented = sagemaker.describe_training_job(TrainingJobName="train-augmented")
        keys = sagemaker.describe_training_job(TrainingJobName="train-keys")
    assert augmented["TrainingJobStatus"] == "Failed"
    assert "is not a manifest of keys" in augmented["FailureReason"]
    assert "AugmentedManifestFile in Pipe mode" in augmented["FailureReason"]
    assert keys["TrainingJobStatus"] == "Completed"


def test_training_job_stops(sagemaker: Any) -> None:
    create_training_job(sagemaker, "train-stop")
    assert sagemaker.describe_training_job(TrainingJobName="train-stop")["TrainingJobStatus"] == "InProgress"
    sagemaker.stop_training_job(TrainingJobName="train-stop")
    job = sagemaker.describe_training_job(TrainingJobName="train-stop")
    assert job["TrainingJobStatus"] == "Stopped"
    with pytest.raises(ClientError, match="status Stopped"):
        sagemaker.stop_training_job(TrainingJobName="train-stop")


def test_compilation_job_writes_a_neo_named_artifact(sagemaker: Any, s3: Any) -> None:
    create_training_job(sagemaker, "train-for-neo")
    for _ in range(3):
        job = sagemaker.describe_training_job(TrainingJobName="train-for-neo")
    model = job["ModelArtifacts"]["S3ModelArtifacts"]
    create_compilation_job(sagemaker, "neo-ok", model)
    for _ in range(2):
        job = sagemaker.describe_compilation_job(CompilationJobName="neo-ok")
        assert job["CompilationJobStatus"] == "INPROGRESS" and "ModelArtifacts" not in job
    job = sagemaker.describe_compilation_job(CompilationJobName="neo-ok")
    assert job["CompilationJobStatus"] == "COMPLETED"
    compiled = f"s3://{BUCKET}/runs/r1/compilation/model-jetson_xavier.tar.gz"
    assert job["ModelArtifacts"]["S3ModelArtifacts"] == compiled
    assert "compiled.meta" in read_tar(s3, compiled)


def test_compilation_job_fails_without_its_input_model_and_on_request(aws: Emulator, sagemaker: Any) -> None:
    create_compilation_job(sagemaker, "neo-missing", f"s3://{BUCKET}/nowhere/model.tar.gz")
    aws.fail_sagemaker_jobs("neo-asked", "ClientError: unsupported operator")
    create_compilation_job(sagemaker, "neo-asked", f"s3://{BUCKET}/nowhere/model.tar.gz")
    for _ in range(3):
        missing = sagemaker.describe_compilation_job(CompilationJobName="neo-missing")
        asked = sagemaker.describe_compilation_job(CompilationJobName="neo-asked")
    assert missing["CompilationJobStatus"] == "FAILED" and "unable to download" in missing["FailureReason"]
    assert asked["CompilationJobStatus"] == "FAILED" and asked["FailureReason"] == "ClientError: unsupported operator"


def test_compilation_job_stops(sagemaker: Any) -> None:
    create_compilation_job(sagemaker, "neo-stop", f"s3://{BUCKET}/nowhere/model.tar.gz")
    sagemaker.stop_compilation_job(CompilationJobName="neo-stop")
    assert sagemaker.describe_compilation_job(CompilationJobName="neo-stop")["CompilationJobStatus"] == "STOPPED"
    with pytest.raises(ClientError):
        sagemaker.stop_compilation_job(CompilationJobName="neo-stop")


def test_neo_output_names() -> None:
    assert compilation_target({"TargetDevice": "jetson_xavier"}) == "jetson_xavier"
    platform = {"TargetPlatform": {"Os": "LINUX", "Arch": "ARM64", "Accelerator": "NVIDIA"}}
    assert compilation_target(platform) == "LINUX_ARM64_NVIDIA"
    assert (
        compiled_model_uri(
            "s3://b/runs/r/training/j/output/model.tar.gz", "s3://b/runs/r/compilation/", "jetson_xavier"
        )
        == "s3://b/runs/r/compilation/model-jetson_xavier.tar.gz"
    )


def test_jobs_also_run_for_a_minimum_time() -> None:
    tracker = JobTracker(SageMakerSettings(in_progress_describes=0, in_progress_seconds=0.2))
    job = JobRecord("training", "timed", time.monotonic(), [])
    job.describes = 5
    assert tracker.still_running(job)
    time.sleep(0.25)
    assert not tracker.still_running(job)
