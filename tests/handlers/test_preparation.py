"""preparation: the Processing job request, start (staging the script), polling, the report → channels."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from lambda_handlers import names, preparation, training
from lambda_handlers.aws import clients
from lambda_handlers.errors import InvalidInput, PreparationFailed, StepTimedOut, Throttled
from lambda_handlers.settings import (
    ARTIFACTS_BUCKET,
    ARTIFACTS_KEY_ARN,
    PREPARATION_SCRIPT,
    PROCESSING_IMAGE,
    SAGEMAKER_ROLE_ARN,
    StepSettings,
    install,
)
from lambda_handlers.state import IN_PROGRESS, SUCCEEDED, DatasetSource, RunState
from tests.handlers.conftest import REGION, make_settings, sagemaker_backend

DATA = "aws-panorama-panopipe-dev-data-123456789012-us-east-1"
ARTIFACTS = "aws-panorama-panopipe-dev-artifacts-123456789012-us-east-1"
ASSETS = "cdk-hnb659fds-assets-123456789012-us-east-1"
SCRIPT_ASSET = "0123abcd.py"
KEY_ARN = "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555"
ROLE_ARN = "arn:aws:iam::123456789012:role/panopipe-dev-sagemaker-execution"
IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.3.0-cpu-py311"
RUN = "ds-raw-0123456789ab"
JOB = names.job_name("panopipe-dev", "prep", RUN)
OUTPUT = f"s3://{ARTIFACTS}/runs/{RUN}/prepared/"


def raw_state(manifest: str | None = None) -> RunState:
    source: DatasetSource = {
        "kind": "dataset",
        "uri": f"s3://{DATA}/datasets/raw/",
        "bucket": DATA,
        "prefix": "datasets/raw/",
        "s3_data_type": "S3Prefix",
        "channels": {},
        "train_records": None,
        "prepare": True,
    }
    if manifest:
        source["raw_manifest"] = manifest
    return {
        "input": {"dataset": source["uri"]},
        "run": {"name": RUN, "started": "2026-12-03T10:00:00Z"},
        "source": source,
    }


@pytest.fixture
def sagemaker(aws: None, settings: StepSettings, monkeypatch: pytest.MonkeyPatch) -> Any:
    for name, value in (
        (ARTIFACTS_BUCKET, ARTIFACTS),
        (ARTIFACTS_KEY_ARN, KEY_ARN),
        (SAGEMAKER_ROLE_ARN, ROLE_ARN),
        (PROCESSING_IMAGE, IMAGE),
        (PREPARATION_SCRIPT, f"s3://{ASSETS}/{SCRIPT_ASSET}"),
    ):
        monkeypatch.setenv(name, value)
    s3 = boto3.client("s3", region_name=REGION)
    for bucket in (ARTIFACTS, ASSETS, DATA):
        s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=ASSETS, Key=SCRIPT_ASSET, Body=b"print('prepare')\n")
    return clients.sagemaker()


def request(config: StepSettings, state: RunState | None = None) -> dict[str, Any]:
    return preparation.preparation_request(
        config,
        state or raw_state(),
        image=IMAGE,
        role_arn=ROLE_ARN,
        bucket=ARTIFACTS,
        key_arn=KEY_ARN,
        script_uri=f"s3://{ARTIFACTS}/code/0123abcd/prepare.py",
    )


def put_report(**values: Any) -> None:
    report = {"train_records": 96, "validation_records": 8, "images_before": {"empty": 20, "person": 20}}
    report.update(values)
    boto3.client("s3", region_name=REGION).put_object(
        Bucket=ARTIFACTS, Key=f"runs/{RUN}/prepared/report.json", Body=json.dumps(report).encode()
    )


def set_job(**attributes: Any) -> None:
    """Give moto's job another status or reason (moto makes every processing job Completed at once)."""
    job = sagemaker_backend().processing_jobs[JOB]
    for name, value in attributes.items():
        setattr(job, name, value)


# --- the request (pure) --------------------------------------------------------------------------


def test_request_runs_the_script_on_the_data_set_and_writes_under_the_run(settings: StepSettings) -> None:
    made = request(settings)
    height, width = settings.model.input_shape[2:4]  # dev's model: NCHW

    assert made["ProcessingJobName"] == JOB
    assert made["AppSpecification"] == {
        "ImageUri": IMAGE,
        "ContainerEntrypoint": ["python3", "/opt/ml/processing/input/code/prepare.py"],
        "ContainerArguments": [
            *("--input", "/opt/ml/processing/input/data", "--output", "/opt/ml/processing/output"),
            *("--message-file", "/opt/ml/output/message"),
            *("--classes", "empty", "person", "--width", str(width), "--height", str(height)),
            *("--variations", "2", "--kinds", "lighting,skew,lens"),
            *("--validation-fraction", "0.2", "--seed", "0"),
            *("--min-images-per-class", "10", "--min-image-side", "32"),
            *("--format", "recordio"),
        ],
    }
    inputs = {i["InputName"]: i["S3Input"] for i in made["ProcessingInputs"]}
    assert inputs["code"]["S3Uri"] == f"s3://{ARTIFACTS}/code/0123abcd/"
    assert inputs["code"]["LocalPath"] == "/opt/ml/processing/input/code"
    assert inputs["data"]["S3Uri"] == f"s3://{DATA}/datasets/raw/"
    assert inputs["data"]["LocalPath"] == "/opt/ml/processing/input/data"
    (output,) = made["ProcessingOutputConfig"]["Outputs"]
    assert output["S3Output"] == {"S3Uri": OUTPUT, "LocalPath": "/opt/ml/processing/output", "S3UploadMode": "EndOfJob"}
    assert made["ProcessingOutputConfig"]["KmsKeyId"] == KEY_ARN
    assert made["ProcessingResources"]["ClusterConfig"] == {
        "InstanceCount": 1,
        "InstanceType": "ml.m5.xlarge",
        "VolumeSizeInGB": 30,
    }
    assert made["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600}


def test_script_mode_gets_image_folders_and_a_manifest_its_label_attribute() -> None:
    config = make_settings(
        {
            "training.mode": "script",
            "training.algorithm": None,
            "training.entry_point": "tests/fixtures/train_detector.py",
            "training.metric": {"name": "validation:mAP", "threshold": 0.5},
            "training.label_attribute": "people-job",
            "preparation.variation_kinds": ["lens"],
            "preparation.variations_per_image": 0,
        }
    )
    arguments = request(config, raw_state("output.manifest"))["AppSpecification"]["ContainerArguments"]

    assert arguments[arguments.index("--format") + 1] == "folders"
    assert arguments[arguments.index("--kinds") + 1] == "lens"
    assert arguments[arguments.index("--variations") + 1] == "0"
    assert arguments[-6:] == [
        *("--manifest", "output.manifest", "--label-attribute", "people-job"),
        *("--source-prefix", f"s3://{DATA}/datasets/raw/"),
    ]


def test_a_source_that_needs_no_preparation_is_refused(settings: StepSettings) -> None:
    state = raw_state()
    state["source"] = {**state["source"], "prepare": False}  # type: ignore[typeddict-item]
    with pytest.raises(InvalidInput, match="preparation needs a raw image data set source"):
        request(settings, state)


# --- start and check against moto ----------------------------------------------------------------


def test_start_stages_the_script_and_starts_the_job(sagemaker: Any) -> None:
    state = preparation.start_preparation(raw_state())

    section = state["preparation"]
    assert section["status"] == IN_PROGRESS
    assert section["job_name"] == JOB and section["output_uri"] == OUTPUT
    staged = boto3.client("s3", region_name=REGION).get_object(Bucket=ARTIFACTS, Key="code/0123abcd/prepare.py")
    assert staged["Body"].read() == b"print('prepare')\n"
    job = sagemaker.describe_processing_job(ProcessingJobName=JOB)
    assert job["RoleArn"] == ROLE_ARN
    assert job["AppSpecification"]["ImageUri"] == IMAGE


def test_a_retried_start_adopts_the_job(sagemaker: Any) -> None:
    first = preparation.start_preparation(raw_state())
    again = preparation.start_preparation(raw_state())

    assert again["preparation"]["job_name"] == first["preparation"]["job_name"]
    assert len(sagemaker_backend().processing_jobs) == 1


def test_completed_job_points_the_source_at_the_prepared_channels(sagemaker: Any) -> None:
    state = preparation.start_preparation(raw_state())
    put_report(images_after={"empty": {"train": 48, "validation": 4}}, imbalance_ratio=1.0, rejected=[{"file": "x"}])

    checked = preparation.check_preparation(state)

    assert checked["preparation"]["status"] == SUCCEEDED
    assert checked["preparation"]["rejected"] == 1
    assert checked["preparation"]["images_before"] == {"empty": 20, "person": 20}
    source = checked["source"]
    assert source["channels"] == {"train": f"{OUTPUT}train/", "validation": f"{OUTPUT}validation/"}
    assert source["s3_data_type"] == "S3Prefix"
    assert source["train_records"] == 96
    # ... which training then uses as they are, num_training_samples from the report
    made = training.training_request(
        make_settings(), checked, image="i", role_arn=ROLE_ARN, bucket=ARTIFACTS, key_arn=KEY_ARN, region=REGION
    )
    assert [c["DataSource"]["S3DataSource"]["S3Uri"] for c in made["InputDataConfig"]] == [
        f"{OUTPUT}train/",
        f"{OUTPUT}validation/",
    ]
    assert made["HyperParameters"]["num_training_samples"] == "96"


def test_a_job_still_running_is_polled_again(sagemaker: Any) -> None:
    state = preparation.start_preparation(raw_state())
    set_job(processing_job_status="InProgress")

    checked = preparation.check_preparation(state)

    assert checked["preparation"]["status"] == IN_PROGRESS
    assert checked["preparation"]["polls"] == 1


def test_a_rejected_data_set_stops_the_run_with_its_reason(sagemaker: Any) -> None:
    state = preparation.start_preparation(raw_state())
    set_job(
        processing_job_status="Failed",
        failure_reason="AlgorithmError: See job logs for more information",
        exit_message="data set rejected: class 'person' has 3 usable images, fewer than "
        "preparation.min_images_per_class (10)",
    )

    with pytest.raises(PreparationFailed) as caught:
        preparation.check_preparation(state)

    assert str(caught.value) == (
        f"processing job {JOB} failed: data set rejected: class 'person' has 3 usable images, fewer than "
        "preparation.min_images_per_class (10); AlgorithmError: See job logs for more information"
    )


def test_a_completed_job_without_its_report_fails(sagemaker: Any) -> None:
    state = preparation.start_preparation(raw_state())

    with pytest.raises(PreparationFailed, match=r"completed without a readable .*report\.json"):
        preparation.check_preparation(state)


def test_a_report_without_training_records_fails(sagemaker: Any) -> None:
    state = preparation.start_preparation(raw_state())
    put_report(train_records=0)

    with pytest.raises(PreparationFailed, match="wrote no training records"):
        preparation.check_preparation(state)


def test_a_job_past_its_deadline_is_stopped(sagemaker: Any) -> None:
    state = preparation.start_preparation(raw_state())
    set_job(processing_job_status="InProgress")
    state["preparation"]["deadline"] = 0

    with pytest.raises(StepTimedOut, match=f"processing job {JOB} still InProgress after the 4200 s timeout; stopped"):
        preparation.check_preparation(state)
    assert sagemaker_backend().processing_jobs[JOB].processing_job_status == "Stopped"


def test_script_mode_has_no_record_count(sagemaker: Any) -> None:
    state = preparation.start_preparation(raw_state())
    put_report()
    install(
        make_settings(
            {
                "training.mode": "script",
                "training.algorithm": None,
                "training.entry_point": "tests/fixtures/train_detector.py",
                "training.metric": {"name": "validation:mAP", "threshold": 0.5},
            }
        )
    )

    assert preparation.check_preparation(state)["source"]["train_records"] is None


def test_throttling_surfaces_as_throttled(aws: None, settings: StepSettings) -> None:
    throttled = boto3.client("sagemaker", region_name=REGION)
    clients._clients["sagemaker"] = throttled
    with Stubber(throttled) as stub:
        stub.add_client_error("describe_processing_job", "ThrottlingException", "Rate exceeded", 400)

        with pytest.raises(Throttled, match="DescribeProcessingJob throttled: ThrottlingException"):
            preparation.check_preparation(
                {**raw_state(), "preparation": {"job_name": JOB, "deadline": 0, "polls": 0, "output_uri": OUTPUT}}
            )


def test_every_container_argument_fits_sagemakers_256_characters() -> None:
    classes = [f"class_number_{i:02d}" for i in range(40)]  # 640 characters comma-joined
    config = make_settings({"model.classes": classes, "training.hyperparameters.num_classes": 40})

    arguments = request(config)["AppSpecification"]["ContainerArguments"]

    assert max(len(a) for a in arguments) <= 256 and len(arguments) <= 256
    assert arguments[arguments.index("--classes") + 1 : arguments.index("--width")] == classes
