"""Steps 2-3: train with SageMaker, wait for the job, and gate on its final metric.

``start_training`` creates one training job per run; its name derives from the run name, so a
retried step that SageMaker answers ResourceInUse adopts the job it already started.
``check_training`` is polled by the state machine (Wait/Choice) until the job is done;
``evaluate`` compares the configured metric of ``FinalMetricDataList`` with its threshold.

Channels are the data set's ``train`` and ``validation`` (S3Prefix, or ManifestFile for the manifest
form), fully replicated to every instance. In built-in mode (image-classification) they carry
RecordIO (``application/x-recordio``: .rec files, the format that needs no .lst channels);
``image_shape`` and ``num_classes`` default to the configured model's. In script mode the framework
container runs ``sagemaker_program`` from the ``sagemaker_submit_directory`` archive, and the
script reports the gate metric by printing ``<metric name>=<value>`` (the MetricDefinition's regex).
"""

from __future__ import annotations

import posixpath
import re
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from lambda_handlers import names, settings
from lambda_handlers.artifacts import split_s3_uri
from lambda_handlers.aws import clients
from lambda_handlers.aws.client_errors import S3_NOT_FOUND, error_code
from lambda_handlers.errors import InvalidInput, MetricBelowThreshold, TrainingFailed
from lambda_handlers.sagemaker_jobs import TRAINING_JOB, poll
from lambda_handlers.settings import MissingSetting, StepSettings
from lambda_handlers.state import (
    IN_PROGRESS,
    SUCCEEDED,
    DatasetSource,
    RunState,
    loop_started,
    polled,
    run_name,
    with_section,
)
from lambda_handlers.step import step

if TYPE_CHECKING:
    from mypy_boto3_sagemaker.type_defs import CreateTrainingJobRequestTypeDef

BUILTIN_CONTENT_TYPE = "application/x-recordio"
AUGMENTED_MANIFEST = "AugmentedManifestFile"
#: A number as scripts print it: 0.93, -1, 1e-05, 3.5E+2.
METRIC_VALUE_REGEX = r"([-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"


def training_job_name(config: StepSettings, run: str) -> str:
    """The one training job name of a run."""
    return names.job_name(config.prefix, "train", run)


def _text(value: str | int | float | bool) -> str:
    """SageMaker hyperparameters are strings; booleans as the algorithms spell them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def hyperparameters(
    config: StepSettings, region: str, source_uri: str | None = None, train_records: int | None = None
) -> dict[str, str]:
    """The job's hyperparameters, all strings (what CreateTrainingJob accepts).

    Script mode: the framework containers unpack ``sagemaker_submit_directory`` (``source_uri``)
    and run ``sagemaker_program``, the entry point's path inside that archive. Built-in:
    ``num_training_samples`` is the count validate_input made of the train channel
    (``train_records``); a configured value is only the fallback.
    """
    values = {key: _text(value) for key, value in config.training.hyperparameters.items()}
    model = config.model
    if config.training.mode == "script":
        if not config.training.program:
            raise MissingSetting("script-mode training needs training.entry_point; redeploy the pipeline stack")
        if not source_uri:
            raise MissingSetting(
                f"script-mode training needs the uploaded source archive ({settings.TRAINING_SOURCE}); "
                "redeploy the pipeline stack"
            )
        values.update(
            sagemaker_program=config.training.program,
            sagemaker_submit_directory=source_uri,
            sagemaker_region=region,
        )
    else:
        # image-classification requires num_classes, and image_shape must match the model's input.
        channels, height, width = model.input_shape[1], model.input_shape[2], model.input_shape[3]
        values.setdefault("image_shape", f"{channels},{height},{width}")
        values.setdefault("num_classes", str(len(model.classes)))
        if train_records is not None:
            values["num_training_samples"] = str(train_records)
        elif "num_training_samples" not in values:
            raise MissingSetting("num_training_samples: the data set was not counted and the config gives none")
    return values


def _dataset(state: RunState) -> DatasetSource:
    source = state.get("source")
    if source is None or source["kind"] != "dataset":
        kind = source["kind"] if source else None
        raise InvalidInput(f"training needs a data set source; this run's source is {kind!r}")
    return source


def training_request(
    config: StepSettings,
    state: RunState,
    *,
    image: str,
    role_arn: str,
    bucket: str,
    key_arn: str,
    region: str,
    source_uri: str | None = None,
) -> CreateTrainingJobRequestTypeDef:
    """The CreateTrainingJob parameters for this run (pure: no AWS call)."""
    source = _dataset(state)
    run = run_name(state)
    training = config.training
    channels: list[Any] = []
    for channel, uri in sorted(source["channels"].items()):
        spec: dict[str, Any] = {
            "ChannelName": channel,
            "DataSource": {
                "S3DataSource": {
                    "S3DataType": source["s3_data_type"],
                    "S3Uri": uri,
                    "S3DataDistributionType": "FullyReplicated",
                }
            },
        }
        if training.mode != "script":
            spec["ContentType"] = BUILTIN_CONTENT_TYPE
        if source["s3_data_type"] == AUGMENTED_MANIFEST:
            # A Ground Truth manifest streams each image with its label: only in Pipe mode, as RecordIO.
            spec["DataSource"]["S3DataSource"]["AttributeNames"] = ["source-ref", training.label_attribute]
            spec["RecordWrapperType"] = "RecordIO"
            spec["InputMode"] = "Pipe"
        channels.append(spec)
    algorithm: dict[str, Any] = {"TrainingImage": image, "TrainingInputMode": "File"}
    if training.mode == "script":
        defined = training.metric_definitions
        algorithm["MetricDefinitions"] = [{"Name": d.name, "Regex": d.regex} for d in defined] or [
            {"Name": training.metric.name, "Regex": f"{re.escape(training.metric.name)}={METRIC_VALUE_REGEX}"}
        ]
    stopping: dict[str, int] = {"MaxRuntimeInSeconds": training.max_runtime_seconds}
    request: dict[str, Any] = {
        "TrainingJobName": training_job_name(config, run),
        "AlgorithmSpecification": algorithm,
        "RoleArn": role_arn,
        "HyperParameters": hyperparameters(config, region, source_uri, source.get("train_records")),
        "InputDataConfig": channels,
        "OutputDataConfig": {"S3OutputPath": f"s3://{bucket}/runs/{run}/training/", "KmsKeyId": key_arn},
        "ResourceConfig": {
            "InstanceType": training.instance_type,
            "InstanceCount": training.instance_count,
            "VolumeSizeInGB": training.volume_size_gb,
        },
        "StoppingCondition": stopping,
        "EnableManagedSpotTraining": training.spot,
    }
    if training.spot:
        wait = training.effective_max_wait_seconds or training.max_runtime_seconds
        stopping["MaxWaitTimeInSeconds"] = max(wait, training.max_runtime_seconds)
        request["CheckpointConfig"] = {"S3Uri": f"s3://{bucket}/runs/{run}/checkpoints/"}
    return request  # type: ignore[return-value]


def staged_source(uploaded: str, bucket: str, filename: str = "sourcedir.tar.gz", variable: str = "") -> str:
    """A CDK asset (the script-mode source archive), copied next to the run's artifacts (once per asset).

    The stack uploads the archive as a CDK asset (bootstrap bucket, named by its content hash);
    the SageMaker role reads only the pipeline's own buckets, so the job gets a copy in the
    artifacts bucket under ``code/<asset name>/<filename>`` (the preparation script uses it too).
    """
    variable = variable or settings.TRAINING_SOURCE
    try:
        source_bucket, source_key = split_s3_uri(uploaded)
    except InvalidInput:
        raise MissingSetting(f"{variable} = {uploaded!r} is not an s3:// object URI; redeploy the stack") from None
    name = posixpath.basename(source_key).split(".", 1)[0]
    key = f"code/{name}/{filename}"
    s3 = clients.s3()
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError as error:
        if error_code(error) not in S3_NOT_FOUND:
            raise
        s3.copy_object(Bucket=bucket, Key=key, CopySource={"Bucket": source_bucket, "Key": source_key})
    return f"s3://{bucket}/{key}"


@step
def start_training(state: RunState) -> RunState:
    """Start this run's training job; a retried step adopts the job an earlier attempt started."""
    config = settings.current()
    sagemaker = clients.sagemaker()
    bucket = settings.env(settings.ARTIFACTS_BUCKET)
    scripted = config.training.mode == "script"
    request = training_request(
        config,
        state,
        image=settings.env(settings.TRAINING_IMAGE),
        role_arn=settings.env(settings.SAGEMAKER_ROLE_ARN),
        bucket=bucket,
        key_arn=settings.env(settings.ARTIFACTS_KEY_ARN),
        region=str(sagemaker.meta.region_name),
        source_uri=staged_source(settings.env(settings.TRAINING_SOURCE), bucket) if scripted else None,
    )
    created = TRAINING_JOB.start(request)
    timeout = config.training_timeout_seconds
    return loop_started(state, "training", timeout, since=created, job_name=request["TrainingJobName"])


@step
def check_training(state: RunState) -> RunState:
    """Poll the job: IN_PROGRESS, SUCCEEDED (+ ``model``), or raise TrainingFailed / StepTimedOut."""
    config = settings.current()
    done, job = poll(TRAINING_JOB, state, config.training_timeout_seconds)
    if not done:
        return polled(state, "training", IN_PROGRESS, secondary_status=job.get("SecondaryStatus"))
    model = config.model
    updated = polled(state, "training", SUCCEEDED)
    updated["model"] = {
        "s3_uri": job["ModelArtifacts"]["S3ModelArtifacts"],
        "framework": model.framework,
        "framework_version": model.framework_version,
        "input_name": model.input_name,
        "input_shape": list(model.input_shape),
    }
    return updated


@step
def evaluate(state: RunState) -> RunState:
    """Gate on the configured final metric; record it, or raise MetricBelowThreshold.

    A metric the job never reported is not a failed gate but a broken setup (wrong metric name, or
    a script that does not print it): that raises TrainingFailed naming the metrics it did report.
    """
    gate = settings.current().training.metric
    job_name = state["training"]["job_name"]
    job = clients.sagemaker().describe_training_job(TrainingJobName=job_name)
    reported = {m["MetricName"]: float(m["Value"]) for m in job.get("FinalMetricDataList") or []}
    if gate.name not in reported:
        listed = ", ".join(sorted(reported)) or "none"
        raise TrainingFailed(
            f"training job {job_name} reported no final value of metric {gate.name} (it reported: {listed}); "
            "check training.metric.name, or that the training script prints it"
        )
    value = reported[gate.name]
    if not gate.passes(value):
        side = "below" if gate.goal == "maximize" else "above"
        raise MetricBelowThreshold(f"metric {gate.name} = {value:g} {side} threshold {gate.threshold:g}")
    return with_section(
        state,
        "training",
        metric={"name": gate.name, "value": value, "threshold": gate.threshold, "goal": gate.goal},
    )
