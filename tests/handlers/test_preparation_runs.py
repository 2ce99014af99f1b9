"""A raw image data set through the state machine (the in-process interpreter): prepared, then trained."""

from __future__ import annotations

import json

from lambda_handlers import names
from lambda_handlers.aws import clients
from lambda_handlers.settings import PREPARATION_SCRIPT
from tests.handlers.conftest import ACCOUNT, REGION, sagemaker_backend
from tests.handlers.test_pipeline_runs import (
    DATA,
    RUN,
    State,
    World,
    deploys_after_compilation,
    failed_at,
    loop,
)
from tests.handlers.test_pipeline_runs import machine as machine  # the fixtures
from tests.handlers.test_pipeline_runs import panorama_client as panorama_client
from tests.handlers.test_pipeline_runs import world as world

__all__ = ["machine", "panorama_client", "world"]

RAW = f"s3://{DATA}/datasets/raw/"
JOB = names.job_name("panopipe-dev", "prep", RUN)


def raw_data_set(world: World) -> None:
    """Class folders of images, and the preparation script's CDK asset where the template says it is."""
    for key in ("datasets/raw/person/a.jpg", "datasets/raw/empty/b.jpg"):
        world.s3.put_object(Bucket=DATA, Key=key, Body=b"jpeg")
    (uri,) = [
        f.environment[PREPARATION_SCRIPT]
        for f in world.machine.functions.values()
        if PREPARATION_SCRIPT in f.environment
    ]
    bucket, key = uri[5:].split("/", 1)
    world.s3.create_bucket(Bucket=bucket)
    world.s3.put_object(Bucket=bucket, Key=key, Body=b"# prepare.py")


def prepare(world: World, polls: int, exit_message: str | None = None) -> None:
    """The processing job runs for ``polls`` polls, then completes (writing its report) or fails."""

    def hook(data: State) -> None:
        job = sagemaker_backend().processing_jobs[data["preparation"]["job_name"]]
        if data["preparation"]["polls"] < polls:
            job.processing_job_status = "InProgress"
            return
        if exit_message is not None:
            job.processing_job_status = "Failed"
            job.failure_reason = "AlgorithmError: See job logs for more information"
            job.exit_message = exit_message
            return
        job.processing_job_status = "Completed"
        output = data["preparation"]["output_uri"]
        bucket, prefix = output[5:].split("/", 1)
        report = {"train_records": 12, "images_before": {"empty": 2, "person": 2}}
        world.s3.put_object(Bucket=bucket, Key=f"{prefix}report.json", Body=json.dumps(report).encode())

    world.hooks["CheckPreparation"] = hook


def test_a_raw_data_set_is_prepared_then_trained_on_its_prepared_channels(world: World) -> None:
    world.stub_code_package()
    raw_data_set(world)
    prepare(world, 1)
    world.train(1)
    world.compile(1)
    world.stub_registration(1)
    world.stub_deployment(1)

    run = world.run({"dataset": RAW})

    assert (run.status, run.error) == ("SUCCEEDED", None), run.cause
    assert run.path == [
        "Start",
        "ValidateInput",
        "Train first?",
        "Prepare first?",
        "StartPreparation",
        *loop("preparation", 1),
        "StartTraining",
        *loop("training", 1),
        "Evaluate",
        *deploys_after_compilation(1),
    ]
    (job,) = sagemaker_backend().training_jobs.values()
    prepared = f"s3://aws-panorama-panopipe-dev-artifacts-{ACCOUNT}-{REGION}/runs/{RUN}/prepared/"
    assert [c["DataSource"]["S3DataSource"]["S3Uri"] for c in job.input_data_config] == [
        f"{prepared}train/",
        f"{prepared}validation/",
    ]
    assert job.hyper_parameters["num_training_samples"] == "12"


def test_a_rejected_data_set_stops_the_run_with_the_reason_before_training(world: World) -> None:
    world.stub_code_package()
    raw_data_set(world)
    reason = "data set rejected: class 'person' has 1 usable images, fewer than preparation.min_images_per_class (10)"
    prepare(world, 0, exit_message=reason)

    run = world.run({"dataset": RAW})

    assert (run.status, run.error) == ("FAILED", "PreparationFailed")
    assert run.cause == f"processing job {JOB} failed: {reason}; AlgorithmError: See job logs for more information"
    assert run.path == [
        "Start",
        "ValidateInput",
        "Train first?",
        "Prepare first?",
        "StartPreparation",
        *failed_at("CheckPreparation"),
    ]
    assert clients.sagemaker().list_training_jobs()["TrainingJobSummaries"] == []
    (message,) = world.messages()
    assert reason in message["Message"]
