"""Step 1b: prepare a raw image data set with a SageMaker Processing job, and wait for it.

Runs only when ValidateInput found raw images (``source.prepare``): ``<class>/`` folders, or a Ground
Truth manifest, under the data set's prefix. The job runs ``processing/prepare.py`` (shipped by the
stack as a file asset, staged under ``code/`` in the artifacts bucket) in a framework image that has
numpy and Pillow; it reads the data set's prefix and writes ``train/``, ``validation/`` and
``report.json`` under ``runs/<run>/prepared/``. ``check_preparation`` then points the run's
``source`` at those channels, with ``train_records`` from the report (the built-in algorithm's
``num_training_samples``). A rejected data set fails the job; its reason (the container's
``ExitMessage``) stops the run as :class:`PreparationFailed`. The job name derives from the run
name, so a retried step adopts the job it already started.
"""

from __future__ import annotations

import json
from typing import Any

from lambda_handlers import names, settings
from lambda_handlers.artifacts import split_s3_uri
from lambda_handlers.aws import clients
from lambda_handlers.errors import InvalidInput, PreparationFailed
from lambda_handlers.sagemaker_jobs import PROCESSING_JOB, poll
from lambda_handlers.settings import StepSettings
from lambda_handlers.state import (
    IN_PROGRESS,
    SUCCEEDED,
    DatasetSource,
    RunState,
    loop_started,
    polled,
    run_name,
)
from lambda_handlers.step import step
from lambda_handlers.training import staged_source

SCRIPT_NAME = "prepare.py"
PROCESSING = "/opt/ml/processing"
CODE_DIR = f"{PROCESSING}/input/code"
DATA_DIR = f"{PROCESSING}/input/data"
OUTPUT_DIR = f"{PROCESSING}/output"
REPORT = "report.json"
MESSAGE_FILE = "/opt/ml/output/message"  # its first 1 KB is DescribeProcessingJob's ExitMessage


def preparation_job_name(config: StepSettings, run: str) -> str:
    """The one processing job name of a run."""
    return names.job_name(config.prefix, "prep", run)


def _raw_dataset(state: RunState) -> DatasetSource:
    source = state.get("source")
    if source is None or source["kind"] != "dataset" or not source.get("prepare"):
        raise InvalidInput("preparation needs a raw image data set source; ValidateInput found none")
    return source


def script_arguments(config: StepSettings, source: DatasetSource) -> list[str]:
    """``prepare.py``'s arguments: the model's classes and input size, and the ``preparation`` section."""
    model, prep = config.model, config.preparation
    nhwc = model.framework == "TENSORFLOW"
    height, width = (model.input_shape[1], model.input_shape[2]) if nhwc else model.input_shape[2:4]
    arguments = [
        *("--input", DATA_DIR, "--output", OUTPUT_DIR, "--message-file", MESSAGE_FILE),
        *("--classes", *model.classes, "--width", str(width), "--height", str(height)),  # arguments ≤ 256 chars each
        *("--variations", str(prep.variations_per_image), "--kinds", ",".join(prep.variation_kinds)),
        *("--validation-fraction", str(prep.validation_fraction), "--seed", str(prep.seed)),
        *("--min-images-per-class", str(prep.min_images_per_class), "--min-image-side", str(prep.min_image_side)),
        *("--format", "folders" if config.training.mode == "script" else "recordio"),
    ]
    manifest = source.get("raw_manifest")
    if manifest:
        arguments += [
            *("--manifest", manifest, "--label-attribute", config.training.label_attribute),
            *("--source-prefix", f"s3://{source['bucket']}/{source['prefix']}"),
        ]
    return arguments


def preparation_request(
    config: StepSettings,
    state: RunState,
    *,
    image: str,
    role_arn: str,
    bucket: str,
    key_arn: str,
    script_uri: str,
) -> dict[str, Any]:
    """The CreateProcessingJob parameters for this run (pure: no AWS call). ``script_uri``: the staged script."""
    source = _raw_dataset(state)
    run = run_name(state)
    prep = config.preparation
    code_prefix = script_uri.rsplit("/", 1)[0] + "/"

    def s3_input(name: str, uri: str, local: str) -> dict[str, Any]:
        return {
            "InputName": name,
            "S3Input": {
                "S3Uri": uri,
                "LocalPath": local,
                "S3DataType": "S3Prefix",
                "S3InputMode": "File",
                "S3DataDistributionType": "FullyReplicated",
            },
        }

    return {
        "ProcessingJobName": preparation_job_name(config, run),
        "RoleArn": role_arn,
        "AppSpecification": {
            "ImageUri": image,
            "ContainerEntrypoint": ["python3", f"{CODE_DIR}/{SCRIPT_NAME}"],
            "ContainerArguments": script_arguments(config, source),
        },
        "ProcessingInputs": [
            s3_input("code", code_prefix, CODE_DIR),
            s3_input("data", f"s3://{source['bucket']}/{source['prefix']}", DATA_DIR),
        ],
        "ProcessingOutputConfig": {
            "Outputs": [
                {
                    "OutputName": "prepared",
                    "S3Output": {
                        "S3Uri": prepared_uri(bucket, run),
                        "LocalPath": OUTPUT_DIR,
                        "S3UploadMode": "EndOfJob",
                    },
                }
            ],
            "KmsKeyId": key_arn,
        },
        "ProcessingResources": {
            "ClusterConfig": {
                "InstanceCount": 1,
                "InstanceType": prep.instance_type,
                "VolumeSizeInGB": prep.volume_size_gb,
            }
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": prep.max_runtime_seconds},
    }


def prepared_uri(bucket: str, run: str) -> str:
    """Where the run's prepared channels and report go."""
    return f"s3://{bucket}/runs/{run}/prepared/"


@step
def start_preparation(state: RunState) -> RunState:
    """Start this run's processing job; a retried step adopts the job an earlier attempt started."""
    config = settings.current()
    bucket = settings.env(settings.ARTIFACTS_BUCKET)
    script = staged_source(settings.env(settings.PREPARATION_SCRIPT), bucket, SCRIPT_NAME, settings.PREPARATION_SCRIPT)
    request = preparation_request(
        config,
        state,
        image=settings.env(settings.PROCESSING_IMAGE),
        role_arn=settings.env(settings.SAGEMAKER_ROLE_ARN),
        bucket=bucket,
        key_arn=settings.env(settings.ARTIFACTS_KEY_ARN),
        script_uri=script,
    )
    created = PROCESSING_JOB.start(request)
    return loop_started(
        state,
        "preparation",
        config.preparation.timeout_seconds,
        since=created,
        job_name=request["ProcessingJobName"],
        output_uri=prepared_uri(bucket, run_name(state)),
    )


def read_report(output_uri: str) -> dict[str, Any]:
    """The job's ``report.json``."""
    bucket, prefix = split_s3_uri(output_uri)
    key = f"{prefix.rstrip('/')}/{REPORT}"
    try:
        body = clients.s3().get_object(Bucket=bucket, Key=key)["Body"].read()
        report: dict[str, Any] = json.loads(body)
    except Exception as error:  # missing or not JSON: the job did not do what it says
        raise PreparationFailed(
            f"the preparation job completed without a readable s3://{bucket}/{key}: {error}"
        ) from None
    return report


@step
def check_preparation(state: RunState) -> RunState:
    """Poll the job: IN_PROGRESS, or SUCCEEDED with ``source`` pointing at the prepared channels.

    Raises PreparationFailed (the rejection reason) or StepTimedOut.
    """
    config = settings.current()
    done, _job = poll(PROCESSING_JOB, state, config.preparation.timeout_seconds)
    if not done:
        return polled(state, "preparation", IN_PROGRESS)
    output = state["preparation"]["output_uri"]
    report = read_report(output)
    train_records = int(report.get("train_records") or 0)
    if train_records == 0:
        raise PreparationFailed(f"the preparation job wrote no training records ({output}{REPORT})")
    source = dict(_raw_dataset(state))
    source.update(
        s3_data_type="S3Prefix",
        channels={"train": f"{output}train/", "validation": f"{output}validation/"},
        train_records=train_records if config.training.mode == "builtin" else None,
    )
    updated = polled(
        state,
        "preparation",
        SUCCEEDED,
        images_before=report.get("images_before") or {},
        images_after=report.get("images_after") or {},
        imbalance_ratio=report.get("imbalance_ratio"),
        rejected=len(report.get("rejected") or []),
    )
    updated["source"] = source  # type: ignore[typeddict-item]
    return updated
