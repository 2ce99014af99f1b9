"""Training steps against moto's SageMaker: the request, idempotency, polling, the evaluation gate."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from lambda_handlers import names, training
from lambda_handlers.aws import clients
from lambda_handlers.errors import InvalidInput, MetricBelowThreshold, StepTimedOut, Throttled, TrainingFailed
from lambda_handlers.settings import (
    ARTIFACTS_BUCKET,
    ARTIFACTS_KEY_ARN,
    SAGEMAKER_ROLE_ARN,
    TRAINING_IMAGE,
    TRAINING_SOURCE,
    Metric,
    MissingSetting,
    Settings,
    use_settings,
)
from lambda_handlers.state import IN_PROGRESS, SUCCEEDED
from tests.handlers.conftest import REGION, sagemaker_backend

DATA = "aws-panorama-panopipe-dev-data-123456789012-us-east-1"
ARTIFACTS = "aws-panorama-panopipe-dev-artifacts-123456789012-us-east-1"
KEY_ARN = "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555"
ROLE_ARN = "arn:aws:iam::123456789012:role/panopipe-dev-sagemaker-execution"
IMAGE = "811284229777.dkr.ecr.us-east-1.amazonaws.com/image-classification:1"
RUN = "ds-d1-0123456789ab"
JOB = names.job_name("panopipe-dev", "train", RUN)


def dataset_state(data_type: str = "S3Prefix") -> dict[str, Any]:
    suffix = {"S3Prefix": "/", "ManifestFile": ".manifest"}[data_type]
    return {
        "input": {"dataset": f"s3://{DATA}/datasets/d1/"},
        "run": {"name": RUN, "started": "2026-11-30T10:00:00Z"},
        "source": {
            "kind": "dataset",
            "uri": f"s3://{DATA}/datasets/d1/",
            "bucket": DATA,
            "prefix": "datasets/d1/",
            "s3_data_type": data_type,
            "channels": {c: f"s3://{DATA}/datasets/d1/{c}{suffix}" for c in ("train", "validation")},
        },
    }


@pytest.fixture
def sagemaker(aws: None, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Any:
    for name, value in (
        (ARTIFACTS_BUCKET, ARTIFACTS),
        (ARTIFACTS_KEY_ARN, KEY_ARN),
        (SAGEMAKER_ROLE_ARN, ROLE_ARN),
        (TRAINING_IMAGE, IMAGE),
    ):
        monkeypatch.setenv(name, value)
    return clients.sagemaker()


def script_settings(settings: Settings, **training_overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "mode": "script",
        "entry_point": "detector/train_detector.py",
        "spot": False,
        "hyperparameters": {"epochs": "20", "lr": "0.001"},
        "metric": Metric(name="validation:mAP", threshold=0.5),
    }
    values.update(training_overrides)
    return replace(settings, training=replace(settings.training, **values))


def started(state: dict[str, Any] | None = None) -> dict[str, Any]:
    return training.start_handler(state or dataset_state(), None)


def set_job(**attributes: Any) -> Any:
    """Give moto's job another status, reason or metrics (moto makes every job Completed at once)."""
    job = sagemaker_backend().training_jobs[JOB]
    for name, value in attributes.items():
        setattr(job, name, value)
    return job


# --- start ---------------------------------------------------------------------------------------


def test_start_creates_a_spot_job_with_checkpoints_kms_and_both_channels(sagemaker: Any) -> None:
    before = time.time()
    state = started()

    assert state["training"] == {
        "job_name": JOB,
        "status": IN_PROGRESS,
        "deadline": state["training"]["deadline"],
        "polls": 0,
    }
    assert before - 1 + 6 * 3600 <= state["training"]["deadline"] <= time.time() + 6 * 3600 + 1
    assert state["source"] == dataset_state()["source"]  # the rest of the state travels on unchanged
    job = sagemaker.describe_training_job(TrainingJobName=JOB)
    assert job["RoleArn"] == ROLE_ARN
    assert job["AlgorithmSpecification"]["TrainingImage"] == IMAGE
    assert job["AlgorithmSpecification"]["TrainingInputMode"] == "File"
    assert job["EnableManagedSpotTraining"] is True
    assert job["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600, "MaxWaitTimeInSeconds": 7200}
    assert job["CheckpointConfig"] == {"S3Uri": f"s3://{ARTIFACTS}/runs/{RUN}/checkpoints/"}
    assert job["OutputDataConfig"] == {"S3OutputPath": f"s3://{ARTIFACTS}/runs/{RUN}/training/", "KmsKeyId": KEY_ARN}
    assert job["ResourceConfig"] == {"InstanceType": "ml.g4dn.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 50}
    assert job["InputDataConfig"] == [
        {
            "ChannelName": channel,
            "ContentType": "application/x-recordio",
            "DataSource": {
                "S3DataSource": {
                    "S3DataType": "S3Prefix",
                    "S3Uri": f"s3://{DATA}/datasets/d1/{channel}/",
                    "S3DataDistributionType": "FullyReplicated",
                }
            },
        }
        for channel in ("train", "validation")
    ]
    assert job["HyperParameters"] == {
        "num_classes": "2",
        "num_training_samples": "400",
        "epochs": "10",
        "image_shape": "3,224,224",  # from the model's input shape
    }


def test_max_wait_never_below_max_runtime(sagemaker: Any, settings: Settings) -> None:
    use_settings(replace(settings, training=replace(settings.training, max_runtime_seconds=5000, max_wait_seconds=60)))
    started()

    stopping = sagemaker.describe_training_job(TrainingJobName=JOB)["StoppingCondition"]
    assert stopping == {"MaxRuntimeInSeconds": 5000, "MaxWaitTimeInSeconds": 5000}


def test_manifest_data_sets_use_manifest_file_channels(sagemaker: Any) -> None:
    started(dataset_state("ManifestFile"))

    channels = sagemaker.describe_training_job(TrainingJobName=JOB)["InputDataConfig"]
    assert [c["DataSource"]["S3DataSource"]["S3DataType"] for c in channels] == ["ManifestFile", "ManifestFile"]
    assert channels[0]["DataSource"]["S3DataSource"]["S3Uri"] == f"s3://{DATA}/datasets/d1/train.manifest"


ASSETS = "cdk-hnb659fds-assets-123456789012-us-east-1"
SOURCE_ASSET = "3f2a9c.tar.gz"


def uploaded_source(monkeypatch: pytest.MonkeyPatch) -> None:
    """The archive the stack uploads as a CDK asset (bootstrap bucket), and the variable naming it."""
    s3 = clients.s3()
    for bucket in (ASSETS, ARTIFACTS):
        s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=ASSETS, Key=SOURCE_ASSET, Body=b"source archive")
    monkeypatch.setenv(TRAINING_SOURCE, f"s3://{ASSETS}/{SOURCE_ASSET}")


def test_script_mode_runs_the_entry_point_from_the_source_archive(
    sagemaker: Any, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_settings(script_settings(settings))
    uploaded_source(monkeypatch)
    started()

    job = sagemaker.describe_training_job(TrainingJobName=JOB)
    assert job["HyperParameters"] == {
        "epochs": "20",
        "lr": "0.001",
        "sagemaker_program": "detector/train_detector.py",
        "sagemaker_submit_directory": f"s3://{ARTIFACTS}/code/3f2a9c/sourcedir.tar.gz",
        "sagemaker_region": REGION,
    }
    copied = clients.s3().get_object(Bucket=ARTIFACTS, Key="code/3f2a9c/sourcedir.tar.gz")["Body"].read()
    assert copied == b"source archive", "the job reads a copy in the artifacts bucket (its role reads no other)"
    assert job["EnableManagedSpotTraining"] is False
    assert job["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600}
    assert "CheckpointConfig" not in job
    assert all("ContentType" not in channel for channel in job["InputDataConfig"])


def test_script_mode_defines_the_gate_metric(settings: Settings) -> None:
    # moto replaces MetricDefinitions with its own on create, so the request is checked before it is sent.
    request = training.training_request(
        script_settings(settings),
        dataset_state(),
        image=IMAGE,
        role_arn=ROLE_ARN,
        bucket=ARTIFACTS,
        key_arn=KEY_ARN,
        region=REGION,
        source_uri=f"s3://{ARTIFACTS}/code/3f2a9c/sourcedir.tar.gz",
    )

    [definition] = request["AlgorithmSpecification"]["MetricDefinitions"]
    assert definition["Name"] == "validation:mAP"
    for line, value in (("epoch 3 validation:mAP=0.734", "0.734"), ("validation:mAP=1e-05 loss=2", "1e-05")):
        match = re.search(definition["Regex"], line)
        assert match is not None and match.group(1) == value
    assert re.search(definition["Regex"], "validationXmAP=0.7") is None


def test_script_mode_without_a_source_archive_is_a_deployment_fault(
    sagemaker: Any, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_settings(script_settings(settings))
    monkeypatch.delenv(TRAINING_SOURCE, raising=False)

    with pytest.raises(MissingSetting, match="TRAINING_SOURCE"):
        started()
    assert sagemaker.list_training_jobs()["TrainingJobSummaries"] == []


def test_start_refuses_a_source_that_needs_no_training(sagemaker: Any) -> None:
    state = {**dataset_state(), "source": {"kind": "model", "s3_uri": f"s3://{ARTIFACTS}/m/model.tar.gz"}}

    with pytest.raises(InvalidInput, match="training needs a data set source"):
        started(state)


def test_a_retried_start_adopts_the_job_instead_of_starting_another(sagemaker: Any) -> None:
    first = started()
    job = sagemaker_backend().training_jobs[JOB]
    job.training_job_status = "InProgress"

    second = started()

    assert second["training"] == first["training"]  # same name, same deadline (counted from the job's creation)
    assert sagemaker_backend().training_jobs[JOB] is job  # not replaced by a second create
    assert [s["TrainingJobName"] for s in sagemaker.list_training_jobs()["TrainingJobSummaries"]] == [JOB]


def test_a_concurrent_create_is_adopted(sagemaker: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    first = started()
    job = sagemaker_backend().training_jobs[JOB]
    # The race: our look finds nothing, then the other attempt's job exists when we create. moto
    # silently replaces same-named training jobs instead of answering ResourceInUse, so that one
    # answer comes from a Stubber on a second, real client.
    monkeypatch.setattr(training, "describe_or_none", lambda name: None)
    other = boto3.client("sagemaker", region_name=REGION)
    with Stubber(other) as stub:
        stub.add_client_error("create_training_job", "ResourceInUse", "Training job names must be unique", 400)
        monkeypatch.setattr(sagemaker, "create_training_job", other.create_training_job)

        second = started()

        stub.assert_no_pending_responses()
    assert second["training"]["job_name"] == first["training"]["job_name"]
    assert sagemaker_backend().training_jobs[JOB] is job


# --- check ---------------------------------------------------------------------------------------


def test_check_polls_until_completed_then_hands_on_the_model(sagemaker: Any) -> None:
    state = started()
    set_job(training_job_status="InProgress", secondary_status="Training", model_artifacts=None)

    state = training.check_handler(state, None)

    assert state["training"]["status"] == IN_PROGRESS
    assert state["training"]["polls"] == 1
    assert state["training"]["secondary_status"] == "Training"
    assert "model" not in state

    set_job(training_job_status="Completed", secondary_status="Completed")
    set_job(model_artifacts={"S3ModelArtifacts": f"s3://{ARTIFACTS}/runs/{RUN}/training/{JOB}/output/model.tar.gz"})
    state = training.check_handler(state, None)

    assert state["training"]["status"] == SUCCEEDED
    assert state["training"]["polls"] == 2
    assert state["model"] == {
        "s3_uri": f"s3://{ARTIFACTS}/runs/{RUN}/training/{JOB}/output/model.tar.gz",
        "framework": "MXNET",
        "framework_version": "1.8",
        "input_name": "data",
        "input_shape": [1, 3, 224, 224],
    }


def test_a_failed_job_raises_its_failure_reason(sagemaker: Any) -> None:
    state = started()
    reason = (
        "AlgorithmError: ClientError: Unable to read data channel 'validation'. "
        "Requested content-type is 'application/x-recordio'"
    )
    set_job(training_job_status="Failed", failure_reason=reason)

    with pytest.raises(TrainingFailed) as caught:
        training.check_handler(state, None)
    assert str(caught.value) == f"training job {JOB} failed: {reason}"


def test_a_stopped_job_fails_the_step(sagemaker: Any) -> None:
    state = started()
    set_job(training_job_status="Stopped")

    with pytest.raises(TrainingFailed, match=f"^training job {JOB} was stopped: no FailureReason given$"):
        training.check_handler(state, None)


@pytest.fixture
def stop_stub(sagemaker: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stubber]:
    """StopTrainingJob through a Stubber: moto 5.2.5 does not implement it (NotImplementedError)."""
    other = boto3.client("sagemaker", region_name=REGION)
    with Stubber(other) as stub:
        monkeypatch.setattr(sagemaker, "stop_training_job", other.stop_training_job)
        yield stub


def test_timeout_stops_the_job_and_fails_the_step(sagemaker: Any, stop_stub: Stubber) -> None:
    state = started()
    set_job(training_job_status="InProgress")
    state["training"]["deadline"] = int(time.time()) - 1
    stop_stub.add_response("stop_training_job", {}, {"TrainingJobName": JOB})

    with pytest.raises(StepTimedOut) as caught:
        training.check_handler(state, None)

    assert str(caught.value) == f"training job {JOB} still InProgress after the 21600 s timeout; stopped it"
    stop_stub.assert_no_pending_responses()


def test_timeout_while_stopping_does_not_stop_again(sagemaker: Any, stop_stub: Stubber) -> None:
    state = started()
    set_job(training_job_status="Stopping")
    state["training"]["deadline"] = int(time.time()) - 1

    with pytest.raises(StepTimedOut, match=r"still Stopping .* it is already stopping$"):
        training.check_handler(state, None)  # a stop call would fail: the Stubber has no response queued


def test_completion_wins_over_a_passed_deadline(sagemaker: Any) -> None:
    state = started()
    state["training"]["deadline"] = 0

    assert training.check_handler(state, None)["training"]["status"] == SUCCEEDED


def test_throttling_surfaces_as_throttled(aws: None, settings: Settings) -> None:
    throttled = boto3.client("sagemaker", region_name=REGION)
    clients._clients["sagemaker"] = throttled
    with Stubber(throttled) as stub:
        stub.add_client_error("describe_training_job", "ThrottlingException", "Rate exceeded", 400)

        with pytest.raises(Throttled, match="DescribeTrainingJob throttled: ThrottlingException"):
            training.check_handler({**dataset_state(), "training": {"job_name": JOB, "deadline": 0, "polls": 0}}, None)


# --- evaluate ------------------------------------------------------------------------------------


def metrics(**values: float) -> list[dict[str, Any]]:
    names_ = {"validation_accuracy": "validation:accuracy", "validation_loss": "validation:loss"}
    return [{"MetricName": names_.get(k, k), "Value": v, "Timestamp": 0} for k, v in values.items()]


def test_evaluate_records_a_metric_that_meets_the_gate(sagemaker: Any) -> None:
    state = started()
    set_job(final_metric_data_list=metrics(train_progress=100.0, validation_accuracy=0.9300000071525574))

    state = training.evaluate_handler(state, None)

    assert state["training"]["metric"] == {
        "name": "validation:accuracy",
        "value": 0.9300000071525574,
        "threshold": 0.8,
        "goal": "maximize",
    }
    assert state["training"]["job_name"] == JOB


def test_evaluate_passes_at_exactly_the_threshold(sagemaker: Any) -> None:
    state = started()
    set_job(final_metric_data_list=metrics(validation_accuracy=0.8))

    assert training.evaluate_handler(state, None)["training"]["metric"]["value"] == 0.8


def test_evaluate_fails_below_the_threshold(sagemaker: Any) -> None:
    state = started()
    set_job(final_metric_data_list=metrics(validation_accuracy=0.7099999785423279))  # SageMaker's float32

    with pytest.raises(MetricBelowThreshold) as caught:
        training.evaluate_handler(state, None)
    assert str(caught.value) == "metric validation:accuracy = 0.71 below threshold 0.8"


def test_evaluate_minimized_metric_fails_above_the_threshold(sagemaker: Any, settings: Settings) -> None:
    gate = Metric(name="validation:loss", threshold=0.3, goal="minimize")
    use_settings(replace(settings, training=replace(settings.training, metric=gate)))
    state = started()
    set_job(final_metric_data_list=metrics(validation_loss=0.45))

    with pytest.raises(MetricBelowThreshold) as caught:
        training.evaluate_handler(state, None)
    assert str(caught.value) == "metric validation:loss = 0.45 above threshold 0.3"


def test_evaluate_without_the_metric_names_what_was_reported(sagemaker: Any) -> None:
    state = started()  # moto reports only train:progress

    with pytest.raises(TrainingFailed) as caught:
        training.evaluate_handler(state, None)
    assert str(caught.value) == (
        f"training job {JOB} reported no final value of metric validation:accuracy (it reported: train:progress); "
        "check training.metric.name, or that the training script prints it"
    )


def test_a_malformed_source_archive_setting_is_a_deployment_fault(
    sagemaker: Any, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_settings(script_settings(settings))
    monkeypatch.setenv(TRAINING_SOURCE, "not-an-s3-uri")
    with pytest.raises(MissingSetting, match="TRAINING_SOURCE = 'not-an-s3-uri' is not an s3:// object URI"):
        started()
    assert sagemaker.list_training_jobs()["TrainingJobSummaries"] == []
