"""Training steps against moto's SageMaker: the request, idempotency, polling, the evaluation gate."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
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
    MissingSetting,
    StepSettings,
    install,
)
from lambda_handlers.state import IN_PROGRESS, SUCCEEDED, RunState
from tests.handlers.conftest import REGION, make_settings, refuse_next_training_job, sagemaker_backend

DATA = "aws-panorama-panopipe-dev-data-123456789012-us-east-1"
ARTIFACTS = "aws-panorama-panopipe-dev-artifacts-123456789012-us-east-1"
KEY_ARN = "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555"
ROLE_ARN = "arn:aws:iam::123456789012:role/panopipe-dev-sagemaker-execution"
IMAGE = "811284229777.dkr.ecr.us-east-1.amazonaws.com/image-classification:1"
RUN = "ds-d1-0123456789ab"
JOB = names.job_name("panopipe-dev", "train", RUN)
#: dev's training wait loop: the spot job's max wait (2 x 3600 s runtime) + 30 min.
TRAINING_TIMEOUT = 2 * 3600 + 1800


def dataset_state(data_type: str = "S3Prefix") -> RunState:
    suffix = {"S3Prefix": "/", "AugmentedManifestFile": ".manifest"}[data_type]
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
            "train_records": 1200,
        },
    }


@pytest.fixture
def sagemaker(aws: None, settings: StepSettings, monkeypatch: pytest.MonkeyPatch) -> Any:
    for name, value in (
        (ARTIFACTS_BUCKET, ARTIFACTS),
        (ARTIFACTS_KEY_ARN, KEY_ARN),
        (SAGEMAKER_ROLE_ARN, ROLE_ARN),
        (TRAINING_IMAGE, IMAGE),
    ):
        monkeypatch.setenv(name, value)
    return clients.sagemaker()


def script_settings() -> StepSettings:
    """dev's settings with a script-mode detector: its entry point in a source directory, no spot."""
    return make_settings(
        {
            "training.mode": "script",
            "training.algorithm": None,
            "training.source_dir": "tests",
            "training.entry_point": "fixtures/train_detector.py",  # in the source directory
            "training.spot": False,
            "training.hyperparameters": {"epochs": 20, "lr": 0.001},
            "training.metric": {"name": "validation:mAP", "threshold": 0.5},
        }
    )


def started(state: Any = None) -> Any:
    return training.start_training(state or dataset_state())


def set_job(name: str = JOB, **attributes: Any) -> Any:
    """Give moto's job another status, reason or metrics (moto makes every job Completed at once)."""
    job = sagemaker_backend().training_jobs[name]
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
    assert before - 1 + TRAINING_TIMEOUT <= state["training"]["deadline"] <= time.time() + TRAINING_TIMEOUT + 1
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
    assert job["HyperParameters"] == {  # the config's, as strings
        "num_classes": "2",
        "num_training_samples": "1200",
        "num_layers": "20",
        "epochs": "10",
        "mini_batch_size": "32",
        "learning_rate": "0.1",
        "lr_scheduler_step": "7",
        "augmentation_type": "crop",
        "image_shape": "3,28,28",  # from the model's input shape
    }


def test_max_wait_never_below_max_runtime(sagemaker: Any, settings: StepSettings) -> None:
    # The config refuses such a spot job; settings from a stale or hand-edited STEP_SETTINGS could still say it.
    short_wait = replace(
        settings.training, max_runtime_seconds=5000, max_wait_seconds=60, effective_max_wait_seconds=60
    )
    install(replace(settings, training=short_wait))
    started()

    stopping = sagemaker.describe_training_job(TrainingJobName=JOB)["StoppingCondition"]
    assert stopping == {"MaxRuntimeInSeconds": 5000, "MaxWaitTimeInSeconds": 5000}


def test_a_ground_truth_manifest_is_streamed_in_pipe_mode_with_its_label_attribute(sagemaker: Any) -> None:
    """AugmentedManifestFile, AttributeNames, RecordIO wrapping, Pipe: what the service model requires
    (the aws fixture's moto refuses an augmented manifest outside Pipe mode or without attributes)."""
    install(make_settings({"training.label_attribute": "person-label"}))
    started(dataset_state("AugmentedManifestFile"))

    channels = sagemaker.describe_training_job(TrainingJobName=JOB)["InputDataConfig"]
    for channel in channels:
        source = channel["DataSource"]["S3DataSource"]
        assert source["S3DataType"] == "AugmentedManifestFile"
        assert source["AttributeNames"] == ["source-ref", "person-label"]
        assert (channel["InputMode"], channel["RecordWrapperType"]) == ("Pipe", "RecordIO")
        assert channel["ContentType"] == "application/x-recordio"
    assert channels[0]["DataSource"]["S3DataSource"]["S3Uri"] == f"s3://{DATA}/datasets/d1/train.manifest"


def test_num_training_samples_is_the_counted_records_the_config_only_a_fallback(sagemaker: Any) -> None:
    started()  # the data set counted 1200 records; dev.yaml's num_training_samples is 480
    assert sagemaker.describe_training_job(TrainingJobName=JOB)["HyperParameters"]["num_training_samples"] == "1200"
    config = make_settings()
    assert training.hyperparameters(config, REGION, train_records=None)["num_training_samples"] == "480"


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
    sagemaker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    install(script_settings())
    uploaded_source(monkeypatch)
    started()

    job = sagemaker.describe_training_job(TrainingJobName=JOB)
    assert job["HyperParameters"] == {
        "epochs": "20",
        "lr": "0.001",
        "sagemaker_program": "fixtures/train_detector.py",
        "sagemaker_submit_directory": f"s3://{ARTIFACTS}/code/3f2a9c/sourcedir.tar.gz",
        "sagemaker_region": REGION,
    }
    copied = clients.s3().get_object(Bucket=ARTIFACTS, Key="code/3f2a9c/sourcedir.tar.gz")["Body"].read()
    assert copied == b"source archive", "the job reads a copy in the artifacts bucket (its role reads no other)"
    assert job["EnableManagedSpotTraining"] is False
    assert job["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600}
    assert "CheckpointConfig" not in job
    assert all("ContentType" not in channel for channel in job["InputDataConfig"])


def test_script_mode_defines_the_gate_metric() -> None:
    # moto replaces MetricDefinitions with its own on create, so the request is checked before it is sent.
    request = training.training_request(
        script_settings(),
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


def test_script_mode_sends_the_configured_metric_definitions() -> None:
    defined = [{"name": "validation:mAP", "regex": "mAP: ([0-9.]+)"}, {"name": "train:loss", "regex": "loss=([0-9.]+)"}]
    request = training.training_request(
        make_settings({"training.metric_definitions": defined}, config="tests/configs/script.yaml"),
        dataset_state(),
        image=IMAGE,
        role_arn=ROLE_ARN,
        bucket=ARTIFACTS,
        key_arn=KEY_ARN,
        region=REGION,
        source_uri=f"s3://{ARTIFACTS}/code/3f2a9c/sourcedir.tar.gz",
    )
    assert request["AlgorithmSpecification"]["MetricDefinitions"] == [
        {"Name": d["name"], "Regex": d["regex"]} for d in defined
    ]


def test_script_mode_without_a_source_archive_is_a_deployment_fault(
    sagemaker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    install(script_settings())
    monkeypatch.delenv(TRAINING_SOURCE, raising=False)

    with pytest.raises(MissingSetting, match="TRAINING_SOURCE"):
        started()
    assert sagemaker.list_training_jobs()["TrainingJobSummaries"] == []


def test_start_refuses_a_source_that_needs_no_training(sagemaker: Any) -> None:
    state = {**dataset_state(), "source": {"kind": "model", "s3_uri": f"s3://{ARTIFACTS}/m/model.tar.gz"}}

    with pytest.raises(InvalidInput, match="training needs a data set source"):
        started(state)


def test_a_retried_or_concurrent_start_adopts_the_job_instead_of_starting_another(sagemaker: Any) -> None:
    """The step creates first: a job of the run's name (an earlier attempt's) makes SageMaker answer
    ResourceInUse, and the step adopts that job, its deadline counted from the job's creation."""
    first = started()
    job = sagemaker_backend().training_jobs[JOB]
    job.training_job_status = "InProgress"

    second = started()  # its create answered ResourceInUse (the aws fixture's moto refuses a taken name)

    assert second["training"] == first["training"]  # same name, same deadline (counted from the job's creation)
    assert sagemaker_backend().training_jobs[JOB] is job  # not replaced by a second create
    assert [s["TrainingJobName"] for s in sagemaker.list_training_jobs()["TrainingJobSummaries"]] == [JOB]


def test_a_create_refused_for_another_reason_is_not_adopted(sagemaker: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    refused = refuse_next_training_job(sagemaker, monkeypatch, "ValidationException", "Invalid instance type")

    with pytest.raises(ClientError, match="ValidationException"):
        started()

    refused.assert_no_pending_responses()


# --- check ---------------------------------------------------------------------------------------


def test_check_polls_until_completed_then_hands_on_the_model(sagemaker: Any) -> None:
    state = started()
    set_job(training_job_status="InProgress", secondary_status="Training", model_artifacts=None)

    state = training.check_training(state)

    assert state["training"]["status"] == IN_PROGRESS
    assert state["training"]["polls"] == 1
    assert state["training"]["secondary_status"] == "Training"
    assert "model" not in state

    set_job(training_job_status="Completed", secondary_status="Completed")
    set_job(model_artifacts={"S3ModelArtifacts": f"s3://{ARTIFACTS}/runs/{RUN}/training/{JOB}/output/model.tar.gz"})
    state = training.check_training(state)

    assert state["training"]["status"] == SUCCEEDED
    assert state["training"]["polls"] == 2
    assert state["model"] == {
        "s3_uri": f"s3://{ARTIFACTS}/runs/{RUN}/training/{JOB}/output/model.tar.gz",
        "framework": "MXNET",
        "framework_version": "1.8",
        "input_name": "data",
        "input_shape": [1, 3, 28, 28],
    }


def test_a_failed_job_raises_its_failure_reason(sagemaker: Any) -> None:
    state = started()
    reason = (
        "AlgorithmError: ClientError: Unable to read data channel 'validation'. "
        "Requested content-type is 'application/x-recordio'"
    )
    set_job(training_job_status="Failed", failure_reason=reason)

    with pytest.raises(TrainingFailed) as caught:
        training.check_training(state)
    assert str(caught.value) == f"training job {JOB} failed: {reason}"


def test_a_stopped_job_fails_the_step(sagemaker: Any) -> None:
    state = started()
    set_job(training_job_status="Stopped")

    with pytest.raises(TrainingFailed, match=f"^training job {JOB} was stopped: no FailureReason given$"):
        training.check_training(state)


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
        training.check_training(state)

    assert (
        str(caught.value) == f"training job {JOB} still InProgress after the {TRAINING_TIMEOUT} s timeout; stopped it"
    )
    stop_stub.assert_no_pending_responses()


def test_timeout_while_stopping_does_not_stop_again(sagemaker: Any, stop_stub: Stubber) -> None:
    state = started()
    set_job(training_job_status="Stopping")
    state["training"]["deadline"] = int(time.time()) - 1

    with pytest.raises(StepTimedOut, match=r"still Stopping .* it is already stopping$"):
        training.check_training(state)  # a stop call would fail: the Stubber has no response queued


def test_completion_wins_over_a_passed_deadline(sagemaker: Any) -> None:
    state = started()
    state["training"]["deadline"] = 0

    assert training.check_training(state)["training"]["status"] == SUCCEEDED


def test_throttling_surfaces_as_throttled(aws: None, settings: StepSettings) -> None:
    throttled = boto3.client("sagemaker", region_name=REGION)
    clients._clients["sagemaker"] = throttled
    with Stubber(throttled) as stub:
        stub.add_client_error("describe_training_job", "ThrottlingException", "Rate exceeded", 400)

        with pytest.raises(Throttled, match="DescribeTrainingJob throttled: ThrottlingException"):
            training.check_training({**dataset_state(), "training": {"job_name": JOB, "deadline": 0, "polls": 0}})


# --- evaluate ------------------------------------------------------------------------------------


def metrics(**values: float) -> list[dict[str, Any]]:
    names_ = {"validation_accuracy": "validation:accuracy", "validation_loss": "validation:loss"}
    return [{"MetricName": names_.get(k, k), "Value": v, "Timestamp": 0} for k, v in values.items()]


def test_evaluate_records_a_metric_that_meets_the_gate(sagemaker: Any) -> None:
    state = started()
    set_job(final_metric_data_list=metrics(train_progress=100.0, validation_accuracy=0.9300000071525574))

    state = training.evaluate(state)

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

    assert training.evaluate(state)["training"]["metric"]["value"] == 0.8


def test_evaluate_fails_below_the_threshold(sagemaker: Any) -> None:
    state = started()
    set_job(final_metric_data_list=metrics(validation_accuracy=0.7099999785423279))  # SageMaker's float32

    with pytest.raises(MetricBelowThreshold) as caught:
        training.evaluate(state)
    assert str(caught.value) == "metric validation:accuracy = 0.71 below threshold 0.8"


def test_evaluate_minimized_metric_fails_above_the_threshold(sagemaker: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    gate = {"name": "validation:loss", "threshold": 0.3, "goal": "minimize"}
    install(make_settings({"training.metric": gate}, config="tests/configs/script.yaml"))
    uploaded_source(monkeypatch)
    state = started()
    set_job(state["training"]["job_name"], final_metric_data_list=metrics(validation_loss=0.45))

    with pytest.raises(MetricBelowThreshold) as caught:
        training.evaluate(state)
    assert str(caught.value) == "metric validation:loss = 0.45 above threshold 0.3"


def test_evaluate_without_the_metric_names_what_was_reported(sagemaker: Any) -> None:
    state = started()  # moto reports only train:progress

    with pytest.raises(TrainingFailed) as caught:
        training.evaluate(state)
    assert str(caught.value) == (
        f"training job {JOB} reported no final value of metric validation:accuracy (it reported: train:progress); "
        "check training.metric.name, or that the training script prints it"
    )


def test_a_malformed_source_archive_setting_is_a_deployment_fault(
    sagemaker: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    install(script_settings())
    monkeypatch.setenv(TRAINING_SOURCE, "not-an-s3-uri")
    with pytest.raises(MissingSetting, match="TRAINING_SOURCE = 'not-an-s3-uri' is not an s3:// object URI"):
        started()
    assert sagemaker.list_training_jobs()["TrainingJobSummaries"] == []
