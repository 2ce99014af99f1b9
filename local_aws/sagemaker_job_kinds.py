"""The two kinds of SageMaker job the pipeline runs: training and Neo compilation, as the emulator runs them.

What differs between them (``sagemaker_job_progress.JobKind``): how statuses are spelled (compilation
jobs: upper case), which statuses Stop*Job accepts, what each writes when it ends well
(``sagemaker_job_artifacts``; a training job that really ran, ``sagemaker_job_container``: its own
model and the metrics of its log), and the errors their APIs answer for an unknown or finished job.
Creating a job starts it running, without artifacts yet (moto: Completed at once); moto's own
MetricDefinitions, which it writes over the job's, are put back. :func:`replacements` lists every
SageMaker job patch of the emulator.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from datetime import datetime
from typing import Any

from local_aws.sagemaker_job_artifacts import (
    compilation_artifact,
    compilation_target,
    compiled_model_uri,
    manifest_file_problem,
    put_s3,
    s3_exists,
    training_artifact,
)
from local_aws.sagemaker_job_container import ContainerJob, jobs_dir, metric_definitions
from local_aws.sagemaker_job_progress import (
    TRACKER,
    JobKind,
    JobRecord,
    describe_job_patch,
    list_jobs_patch,
    start_job,
    stop_job_operation,
    stop_job_response,
)


def _validation_error(message: str) -> Exception:
    from moto.sagemaker.exceptions import ValidationError

    return ValidationError(message=message)


def _resource_not_found(message: str) -> Exception:
    from moto.sagemaker.exceptions import ResourceNotFound

    return ResourceNotFound(message=message)


def _finish_training(backend: Any, job: Any, record: JobRecord, now: datetime) -> str | None:
    """Write model.tar.gz and report the final metrics (or why the job fails)."""
    if record.container is not None:
        return _finish_container(backend, job, record.container, now)
    reason = TRACKER.failure_reason(job.training_job_name) or manifest_file_problem(
        backend.account_id, backend.region_name, job.input_data_config or []
    )
    artifact_uri = f"{job.output_data_config['S3OutputPath'].rstrip('/')}/{job.training_job_name}/output/model.tar.gz"
    if reason is None:
        try:
            body = training_artifact(job.training_job_name, job.hyper_parameters)
            kms = job.output_data_config.get("KmsKeyId")
            put_s3(backend.account_id, backend.region_name, artifact_uri, body, kms)
        except Exception as error:  # e.g. the output bucket does not exist
            reason = f"ClientError: unable to upload the model artifact to {artifact_uri}: {error}"
    if reason is not None:
        return reason
    job.model_artifacts = {"S3ModelArtifacts": artifact_uri}
    job.final_metric_data_list = [
        {"MetricName": name, "Value": TRACKER.metric_value(job.training_job_name, name), "Timestamp": now}
        for name in record.metric_names
    ]
    return None


_TRAINING = JobKind(
    label="training",
    spell=str,
    stoppable=("InProgress", "Stopping"),
    finish=_finish_training,
    not_found=lambda name: _validation_error("Requested resource not found."),
    cannot_stop=lambda name, status: _validation_error(
        f"The request was rejected because the training job is in status {status}."
    ),
    secondary_status=True,
)


def _create_training_job(original: Callable[..., Any]) -> Callable[..., Any]:
    """CreateTrainingJob: the job starts running (a duplicate name is refused first: ``sagemaker_job_requests``)."""

    def create_training_job(self: Any, training_job_name: str, **kwargs: Any) -> Any:
        algorithm = copy.deepcopy(kwargs.get("algorithm_specification") or {})
        request = copy.deepcopy(kwargs)
        job = original(self, training_job_name=training_job_name, **kwargs)
        definitions = algorithm.get("MetricDefinitions")
        job.algorithm_specification = algorithm  # moto overwrites MetricDefinitions with its own
        names = [str(d["Name"]) for d in definitions] if definitions else TRACKER.builtin_metric_names()
        if TRACKER.settings.run_training:
            names = [d["Name"] for d in metric_definitions(algorithm)]
        job.secondary_status = "Starting"
        job.final_metric_data_list = None
        job.secondary_status_transitions = [
            {"Status": "Starting", "StartTime": job.creation_time, "StatusMessage": "Starting the training job"}
        ]
        start_job(_TRAINING, job, training_job_name, names)
        if TRACKER.settings.run_training:
            record = TRACKER.get(job.arn)
            if record is not None:
                request["algorithm_specification"] = algorithm
                record.container = _start_container(self, job, request)
        return job

    return create_training_job


def _finish_container(backend: Any, job: Any, container: ContainerJob, now: datetime) -> str | None:
    """A job that really ran: its model.tar.gz (and output.tar.gz), the metrics of its log; or its failure."""
    name = job.training_job_name
    reason = TRACKER.failure_reason(name) or container.failure_reason()
    output = f"{job.output_data_config['S3OutputPath'].rstrip('/')}/{name}/output"
    kms = job.output_data_config.get("KmsKeyId")
    if reason is None:
        try:
            put_s3(backend.account_id, backend.region_name, f"{output}/model.tar.gz", container.model_artifact(), kms)
            data = container.output_artifact()
            if data is not None:
                put_s3(backend.account_id, backend.region_name, f"{output}/output.tar.gz", data, kms)
        except Exception as error:  # e.g. the output bucket does not exist
            reason = f"ClientError: unable to upload the model artifact to {output}/model.tar.gz: {error}"
    if reason is not None:
        return reason
    job.model_artifacts = {"S3ModelArtifacts": f"{output}/model.tar.gz"}
    found = container.metrics(metric_definitions(job.algorithm_specification))
    for metric in list(found):  # a run-time request (control route) overrides what the log shows
        requested = TRACKER.requested_metric(name, metric)
        found[metric] = found[metric] if requested is None else requested
    job.final_metric_data_list = [{"MetricName": k, "Value": v, "Timestamp": now} for k, v in found.items()]
    return None


def _start_container(backend: Any, job: Any, request: dict[str, Any]) -> ContainerJob:
    """Run the job's code (``SageMakerSettings.run_training``)."""
    from local_aws import moto_patches

    settings = TRACKER.settings
    installed = moto_patches.installed()
    name = job.training_job_name
    return ContainerJob(
        name=name,
        root=(settings.jobs_dir or jobs_dir()) / name,
        account_id=backend.account_id,
        region=backend.region_name,
        request=request,
        endpoint=installed.endpoint if installed else None,
        python=settings.training_python,
    ).start()


# --------------------------------------------------------------------------------------------------
# Compilation jobs
# --------------------------------------------------------------------------------------------------


def _finish_compilation(backend: Any, job: Any, record: JobRecord, now: datetime) -> str | None:
    """Write the compiled model where Neo would (or say why the job fails)."""
    reason = TRACKER.failure_reason(job.compilation_job_name)
    input_uri = str((job.input_config or {}).get("S3Uri", ""))
    output_uri = compiled_model_uri(
        input_uri, job.output_config["S3OutputLocation"], compilation_target(job.output_config)
    )
    if reason is None and input_uri and not s3_exists(backend.account_id, backend.region_name, input_uri):
        reason = f"ClientError: InputConfiguration: unable to download the model from {input_uri}: no such object"
    if reason is None:
        try:
            body = compilation_artifact(job.compilation_job_name, compilation_target(job.output_config))
            kms = job.output_config.get("KmsKeyId")
            put_s3(backend.account_id, backend.region_name, output_uri, body, kms)
        except Exception as error:
            reason = f"ClientError: unable to upload the compiled model to {output_uri}: {error}"
    if reason is not None:
        return reason
    job.model_artifacts = {"S3ModelArtifacts": output_uri}
    return None


_COMPILATION = JobKind(
    label="compilation",
    spell=str.upper,
    stoppable=("STARTING", "INPROGRESS", "STOPPING"),
    finish=_finish_compilation,
    not_found=lambda name: _resource_not_found(f"Could not find compilation job '{name}'."),
    cannot_stop=lambda name, status: _validation_error(f"Compilation job {name} cannot be stopped in status {status}."),
    drop_none=True,
)


def _create_compilation_job(original: Callable[..., Any]) -> Callable[..., Any]:
    """CreateCompilationJob: the job starts running, without artifacts yet."""

    def create_compilation_job(self: Any, compilation_job_name: str, **kwargs: Any) -> Any:
        arn = original(self, compilation_job_name=compilation_job_name, **kwargs)
        job = self.compilation_jobs[compilation_job_name]
        job.failure_reason = None
        start_job(_COMPILATION, job, compilation_job_name, [])
        return arn

    return create_compilation_job


# --------------------------------------------------------------------------------------------------
# The list moto_patches applies
# --------------------------------------------------------------------------------------------------


def _new(operation: Callable[..., Any]) -> Callable[[Any], Any]:
    """make(original) for an operation moto lacks: ``operation`` whatever moto has in its place."""

    def make(_original: Any) -> Callable[..., Any]:
        return operation

    return make


def replacements() -> list[tuple[object, str, Callable[[Any], Any]]]:
    """(owner, attribute, make(original) -> replacement) for every SageMaker job patch but the name check."""
    from moto.sagemaker.models import SageMakerModelBackend
    from moto.sagemaker.responses import SageMakerResponse

    backend = SageMakerModelBackend
    patches: list[tuple[object, str, Callable[[Any], Any]]] = [
        (backend, "create_training_job", _create_training_job),
        (backend, "create_compilation_job", _create_compilation_job),
    ]
    for kind in (_TRAINING, _COMPILATION):
        patches += [
            (backend, f"describe_{kind.label}_job", functools.partial(describe_job_patch, kind)),
            (backend, f"list_{kind.label}_jobs", functools.partial(list_jobs_patch, kind)),
            (backend, f"stop_{kind.label}_job", _new(stop_job_operation(kind))),
            (SageMakerResponse, f"stop_{kind.label}_job", _new(stop_job_response(kind))),
        ]
    return patches
