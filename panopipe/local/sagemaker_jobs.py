"""SageMaker training and Neo compilation jobs that progress like real ones (moto's are done at once).

moto 5.2.5 marks a training or compilation job Completed the moment it is created, writes no model
artifact, reports a made-up metric (``train:progress``) and does not implement StopTrainingJob or
StopCompilationJob. The replacements here keep each job InProgress for a configurable number of
Describe calls and/or seconds (:class:`SageMakerSettings`), then end it:

- Completed: the model artifact, a small valid ``tar.gz``, is written where the real service writes
  it — training: ``<OutputDataConfig.S3OutputPath>/<job name>/output/model.tar.gz`` (also reported as
  ``ModelArtifacts.S3ModelArtifacts``); compilation: ``<OutputConfig.S3OutputLocation>/<input model
  basename without .tar.gz>-<target>.tar.gz``, named like Neo's output (target: the TargetDevice, or
  ``<Os>_<Arch>[_<Accelerator>]`` of a TargetPlatform). A training job reports FinalMetricDataList
  for the names of its MetricDefinitions, or — for a built-in algorithm, which defines its own — for
  the names in ``SageMakerSettings.metrics`` (``validation:accuracy`` for image-classification).
- Failed, with a FailureReason, when the job's name contains one of ``SageMakerSettings.fail_jobs``
  or a failure was requested at run time (:meth:`JobTracker.request_failure`, the emulator's control
  route ``POST /_panopipe/sagemaker/fail``). A job also fails, as a real one would, when its output
  bucket (or, for Neo, its input model object) does not exist.
- Stopped, after Stopping, when Stop*Job is called while it runs.

Progress is evaluated when a job is described or listed (the only moments a client can observe it).
"""

from __future__ import annotations

import copy
import gzip
import io
import json
import tarfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlparse

#: The gate metric of SageMaker's built-in image-classification algorithm and its training twin.
DEFAULT_METRICS: Mapping[str, float] = {"validation:accuracy": 0.93, "train:accuracy": 0.95}

JobKind = Literal["training", "compilation"]


@dataclass
class SageMakerSettings:
    """How emulated jobs progress and end (the emulator's defaults suit the pipeline's tests)."""

    #: Describe calls that still see a job running (1: the first poll sees InProgress, the second the end).
    in_progress_describes: int = 1
    #: Seconds a job runs at least (both conditions must be met before it ends).
    in_progress_seconds: float = 0.0
    #: A job whose name contains one of these substrings fails.
    fail_jobs: set[str] = field(default_factory=set)
    #: The FailureReason of a job failed on request (a per-request reason takes precedence).
    failure_reason: str = "AlgorithmError: the job was failed on request by the local emulator"
    #: Final metric values by name; names of built-in algorithms' metrics when a job defines none.
    metrics: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_METRICS))
    #: The value of a metric a job defines (MetricDefinitions) that ``metrics`` does not name.
    default_metric_value: float = 0.93


@dataclass
class _Job:
    """The emulator's record of one job (kept beside moto's object, whose ``__dict__`` is its response)."""

    kind: JobKind
    name: str
    started: float  # time.monotonic()
    metric_names: list[str]
    describes: int = 0
    stop_requested: bool = False
    ended: bool = False


class JobTracker:
    """Progress of every job created while the patches are installed, and the requests about them."""

    def __init__(self, settings: SageMakerSettings | None = None) -> None:
        """Track jobs with ``settings`` (replaceable later with :meth:`configure`)."""
        self.settings = settings or SageMakerSettings()
        self._lock = threading.RLock()
        self._jobs: dict[str, _Job] = {}  # by job ARN
        self._failures: dict[str, str] = {}  # name substring -> reason
        self._metrics: list[tuple[str, dict[str, float]]] = []  # (name substring, metric values)

    def configure(self, settings: SageMakerSettings) -> None:
        """Use ``settings`` from now on (jobs already running keep their start time)."""
        with self._lock:
            self.settings = settings

    def reset(self) -> None:
        """Forget every job and request (the emulator's state was reset)."""
        with self._lock:
            self._jobs.clear()
            self._failures.clear()
            self._metrics.clear()

    def request_failure(self, job: str, reason: str | None = None) -> None:
        """Make every job whose name contains ``job`` fail when it ends (now running or created later)."""
        if not job:
            raise ValueError("a job name substring is required")
        with self._lock:
            self._failures[job] = reason or self.settings.failure_reason

    def set_metrics(self, job: str, metrics: Mapping[str, float]) -> None:
        """Report these final metric values for jobs whose name contains ``job`` (e.g. below a gate)."""
        with self._lock:
            self._metrics.append((job, {str(k): float(v) for k, v in metrics.items()}))

    # -- decisions ---------------------------------------------------------------------------------

    def failure_reason(self, name: str) -> str | None:
        """Why the job ``name`` must fail, or None."""
        with self._lock:
            for part, reason in self._failures.items():
                if part in name:
                    return reason
            if any(part and part in name for part in self.settings.fail_jobs):
                return self.settings.failure_reason
        return None

    def metric_value(self, job: str, metric: str) -> float:
        """The final value of ``metric`` for ``job``: a run-time request, the settings, or the default."""
        with self._lock:
            for part, values in reversed(self._metrics):
                if part in job and metric in values:
                    return values[metric]
            return self.settings.metrics.get(metric, self.settings.default_metric_value)

    def builtin_metric_names(self) -> list[str]:
        """Metric names reported by a job that defines none (a built-in algorithm)."""
        with self._lock:
            return list(self.settings.metrics)

    def track(self, arn: str, job: _Job) -> None:
        """Start tracking a newly created job."""
        with self._lock:
            self._jobs[arn] = job

    def get(self, arn: str) -> _Job | None:
        """The record of the job ``arn`` (None: created before the patches were installed)."""
        with self._lock:
            return self._jobs.get(arn)

    def still_running(self, job: _Job) -> bool:
        """Whether ``job`` must still be reported as running, after counting this look at it."""
        settings = self.settings
        return job.describes <= settings.in_progress_describes or (
            time.monotonic() - job.started < settings.in_progress_seconds
        )


#: The tracker the installed patches use (one emulator per process).
TRACKER = JobTracker()


# --------------------------------------------------------------------------------------------------
# Artifacts
# --------------------------------------------------------------------------------------------------


def _tar_gz(files: Mapping[str, bytes]) -> bytes:
    """A small, valid, reproducible tar.gz holding ``files``."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as archive:
        for name, data in sorted(files.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0)


def training_artifact(job_name: str, hyperparameters: Mapping[str, str] | None) -> bytes:
    """The model.tar.gz of an emulated training job (placeholder model files and a description)."""
    about = {"emulated_by": "panopipe local", "training_job": job_name, "hyperparameters": dict(hyperparameters or {})}
    return _tar_gz(
        {
            "model-info.json": json.dumps(about, indent=1, sort_keys=True).encode("utf-8"),
            "model-symbol.json": b'{"nodes": [], "arg_nodes": [], "heads": []}',
            "model-0000.params": b"\x00" * 64,
        }
    )


def compilation_artifact(job_name: str, target: str) -> bytes:
    """The compiled model of an emulated Neo job (placeholder files named like Neo's output)."""
    meta = {"emulated_by": "panopipe local", "compilation_job": job_name, "target": target}
    return _tar_gz(
        {
            "compiled.meta": json.dumps(meta, indent=1, sort_keys=True).encode("utf-8"),
            "compiled_model.json": b'{"nodes": [], "arg_nodes": [], "heads": []}',
            "compiled.params": b"\x00" * 64,
            "compiled.so": b"\x7fELF-placeholder",
        }
    )


def compilation_target(output_config: Mapping[str, Any]) -> str:
    """The target part of Neo's output name: the TargetDevice, or ``<Os>_<Arch>[_<Accelerator>]``."""
    if output_config.get("TargetDevice"):
        return str(output_config["TargetDevice"])
    platform = output_config.get("TargetPlatform") or {}
    parts = [platform.get("Os"), platform.get("Arch"), platform.get("Accelerator")]
    return "_".join(str(part) for part in parts if part) or "unknown"


def compiled_model_uri(input_uri: str, output_location: str, target: str) -> str:
    """Where Neo writes the compiled model of ``input_uri`` for ``target``."""
    base = input_uri.rstrip("/").rsplit("/", 1)[-1]
    base = base.removesuffix(".tar.gz").removesuffix(".tgz") or "model"
    return f"{output_location.rstrip('/')}/{base}-{target}.tar.gz"


def _put_s3(account_id: str, region: str, uri: str, body: bytes, kms_key_id: str | None) -> None:
    """Write ``body`` to ``uri`` in moto's S3 backend (raises moto's S3 errors, e.g. a missing bucket)."""
    from moto.s3.models import s3_backends
    from moto.utilities.utils import get_partition

    location = urlparse(uri)
    backend = s3_backends[account_id][get_partition(region)]
    backend.put_object(
        location.netloc,
        location.path.lstrip("/"),
        body,
        encryption="aws:kms" if kms_key_id else None,
        kms_key_id=kms_key_id or None,
    )


def _s3_exists(account_id: str, region: str, uri: str) -> bool:
    """Whether the object ``uri`` exists in moto's S3 backend."""
    from moto.s3.models import s3_backends
    from moto.utilities.utils import get_partition

    location = urlparse(uri)
    backend = s3_backends[account_id][get_partition(region)]
    try:
        return backend.get_object(location.netloc, location.path.lstrip("/")) is not None
    except Exception:  # moto raises MissingBucket/MissingKey
        return False


def _now() -> datetime:
    return datetime.now(UTC)


# --------------------------------------------------------------------------------------------------
# Training jobs
# --------------------------------------------------------------------------------------------------


def _advance_training(backend: Any, job: Any, describing: bool) -> None:
    """Move one moto FakeTrainingJob along: running → Completed / Failed / Stopped."""
    record = TRACKER.get(job.arn)
    if record is None or record.ended:
        return
    if describing:
        record.describes += 1
    now = _now()
    job.last_modified_time = now
    if record.stop_requested:
        _end_training(job, record, "Stopped", now)
        return
    if TRACKER.still_running(record):
        job.training_job_status = "InProgress"
        job.secondary_status = "Training" if record.describes > 1 else "Starting"
        return
    reason = TRACKER.failure_reason(job.training_job_name)
    artifact_uri = f"{job.output_data_config['S3OutputPath'].rstrip('/')}/{job.training_job_name}/output/model.tar.gz"
    if reason is None:
        try:
            body = training_artifact(job.training_job_name, job.hyper_parameters)
            kms = job.output_data_config.get("KmsKeyId")
            _put_s3(backend.account_id, backend.region_name, artifact_uri, body, kms)
        except Exception as error:  # e.g. the output bucket does not exist
            reason = f"ClientError: unable to upload the model artifact to {artifact_uri}: {error}"
    if reason is not None:
        job.failure_reason = reason
        _end_training(job, record, "Failed", now)
        return
    job.model_artifacts = {"S3ModelArtifacts": artifact_uri}
    job.final_metric_data_list = [
        {"MetricName": name, "Value": TRACKER.metric_value(job.training_job_name, name), "Timestamp": now}
        for name in record.metric_names
    ]
    _end_training(job, record, "Completed", now)


def _end_training(job: Any, record: _Job, status: str, now: datetime) -> None:
    record.ended = True
    job.training_job_status = status
    job.secondary_status = status
    job.training_end_time = now
    job.secondary_status_transitions = [
        {"Status": "Starting", "StartTime": job.creation_time, "EndTime": job.training_start_time},
        {"Status": "Training", "StartTime": job.training_start_time, "EndTime": now},
        {"Status": status, "StartTime": now, "EndTime": now},
    ]


def _create_training_job(original: Callable[..., Any]) -> Callable[..., Any]:
    """CreateTrainingJob: refuse a duplicate name (moto replaces the job) and start the job running."""
    from moto.sagemaker.exceptions import ResourceInUseException

    def create_training_job(self: Any, training_job_name: str, **kwargs: Any) -> Any:
        if training_job_name in self.training_jobs:
            raise ResourceInUseException(
                message="Training job names must be unique within an AWS account and region, "
                f"and a training job with this name already exists ({training_job_name})"
            )
        algorithm = copy.deepcopy(kwargs.get("algorithm_specification") or {})
        job = original(self, training_job_name=training_job_name, **kwargs)
        definitions = algorithm.get("MetricDefinitions")
        job.algorithm_specification = algorithm  # moto overwrites MetricDefinitions with its own
        names = [str(d["Name"]) for d in definitions] if definitions else TRACKER.builtin_metric_names()
        job.training_job_status = "InProgress"
        job.secondary_status = "Starting"
        job.training_end_time = None
        job.model_artifacts = None
        job.final_metric_data_list = None
        job.secondary_status_transitions = [
            {"Status": "Starting", "StartTime": job.creation_time, "StatusMessage": "Starting the training job"}
        ]
        TRACKER.track(job.arn, _Job("training", training_job_name, time.monotonic(), names))
        return job

    return create_training_job


def _describe_training_job(original: Callable[..., Any]) -> Callable[..., Any]:
    """DescribeTrainingJob: one more look at the job, which may end it."""

    def describe_training_job(self: Any, training_job_name: str) -> Any:
        job = self.training_jobs.get(training_job_name)
        if job is not None:
            _advance_training(self, job, describing=True)
        return original(self, training_job_name)

    return describe_training_job


def _list_training_jobs(original: Callable[..., Any]) -> Callable[..., Any]:
    """ListTrainingJobs: statuses as of now (a list is not a describe: no describe is counted)."""

    def list_training_jobs(self: Any, *args: Any, **kwargs: Any) -> Any:
        for job in list(self.training_jobs.values()):
            _advance_training(self, job, describing=False)
        return original(self, *args, **kwargs)

    return list_training_jobs


def _stop_training_job(self: Any, training_job_name: str) -> None:
    """StopTrainingJob (moto: not implemented): a running job goes Stopping, then Stopped."""
    from moto.sagemaker.exceptions import ValidationError

    job = self.training_jobs.get(training_job_name)
    if job is None:
        raise ValidationError(message="Requested resource not found.")
    record = TRACKER.get(job.arn)
    if record is None or record.ended or job.training_job_status not in ("InProgress", "Stopping"):
        raise ValidationError(
            message=f"The request was rejected because the training job is in status {job.training_job_status}."
        )
    record.stop_requested = True
    job.training_job_status = "Stopping"
    job.secondary_status = "Stopping"
    job.last_modified_time = _now()


# --------------------------------------------------------------------------------------------------
# Compilation jobs
# --------------------------------------------------------------------------------------------------


def _advance_compilation(backend: Any, job: Any, describing: bool) -> None:
    """Move one moto CompilationJob along: INPROGRESS → COMPLETED / FAILED / STOPPED."""
    record = TRACKER.get(job.arn)
    if record is None or record.ended:
        return
    if describing:
        record.describes += 1
    now = _now()
    job.last_modified_time = now
    if record.stop_requested:
        _end_compilation(job, record, "STOPPED", now)
        return
    if TRACKER.still_running(record):
        job.compilation_job_status = "INPROGRESS"
        return
    reason = TRACKER.failure_reason(job.compilation_job_name)
    input_uri = str((job.input_config or {}).get("S3Uri", ""))
    output_uri = compiled_model_uri(
        input_uri, job.output_config["S3OutputLocation"], compilation_target(job.output_config)
    )
    if reason is None and input_uri and not _s3_exists(backend.account_id, backend.region_name, input_uri):
        reason = f"ClientError: InputConfiguration: unable to download the model from {input_uri}: no such object"
    if reason is None:
        try:
            body = compilation_artifact(job.compilation_job_name, compilation_target(job.output_config))
            kms = job.output_config.get("KmsKeyId")
            _put_s3(backend.account_id, backend.region_name, output_uri, body, kms)
        except Exception as error:
            reason = f"ClientError: unable to upload the compiled model to {output_uri}: {error}"
    if reason is not None:
        job.failure_reason = reason
        _end_compilation(job, record, "FAILED", now)
        return
    job.model_artifacts = {"S3ModelArtifacts": output_uri}
    _end_compilation(job, record, "COMPLETED", now)


def _end_compilation(job: Any, record: _Job, status: str, now: datetime) -> None:
    record.ended = True
    job.compilation_job_status = status
    job.compilation_end_time = now


def _create_compilation_job(original: Callable[..., Any]) -> Callable[..., Any]:
    """CreateCompilationJob: the job starts running, without artifacts yet."""

    def create_compilation_job(self: Any, compilation_job_name: str, **kwargs: Any) -> Any:
        arn = original(self, compilation_job_name=compilation_job_name, **kwargs)
        job = self.compilation_jobs[compilation_job_name]
        job.compilation_job_status = "INPROGRESS"
        job.compilation_end_time = None
        job.model_artifacts = None
        job.failure_reason = None
        TRACKER.track(job.arn, _Job("compilation", compilation_job_name, time.monotonic(), []))
        return arn

    return create_compilation_job


def _describe_compilation_job(original: Callable[..., Any]) -> Callable[..., Any]:
    """DescribeCompilationJob: one more look at the job, which may end it."""

    def describe_compilation_job(self: Any, compilation_job_name: str) -> Any:
        job = self.compilation_jobs.get(compilation_job_name)
        if job is not None:
            _advance_compilation(self, job, describing=True)
        description = original(self, compilation_job_name)
        return {key: value for key, value in description.items() if value is not None}

    return describe_compilation_job


def _list_compilation_jobs(original: Callable[..., Any]) -> Callable[..., Any]:
    """ListCompilationJobs: statuses as of now."""

    def list_compilation_jobs(self: Any, *args: Any, **kwargs: Any) -> Any:
        for job in list(self.compilation_jobs.values()):
            _advance_compilation(self, job, describing=False)
        return original(self, *args, **kwargs)

    return list_compilation_jobs


def _stop_compilation_job(self: Any, compilation_job_name: str) -> None:
    """StopCompilationJob (moto: not implemented): a running job goes STOPPING, then STOPPED."""
    from moto.sagemaker.exceptions import ResourceNotFound, ValidationError

    job = self.compilation_jobs.get(compilation_job_name)
    if job is None:
        raise ResourceNotFound(message=f"Could not find compilation job '{compilation_job_name}'.")
    record = TRACKER.get(job.arn)
    if record is None or record.ended or job.compilation_job_status not in ("STARTING", "INPROGRESS", "STOPPING"):
        raise ValidationError(
            message=f"Compilation job {compilation_job_name} cannot be stopped in status {job.compilation_job_status}."
        )
    record.stop_requested = True
    job.compilation_job_status = "STOPPING"
    job.last_modified_time = _now()


# --------------------------------------------------------------------------------------------------
# API surface for the response class (the operations moto does not route)
# --------------------------------------------------------------------------------------------------


def _stop_training_job_response(self: Any) -> Any:
    from moto.core.responses import EmptyResult

    self.sagemaker_backend.stop_training_job(self._get_param("TrainingJobName"))
    return EmptyResult()


def _stop_compilation_job_response(self: Any) -> Any:
    from moto.core.responses import EmptyResult

    self.sagemaker_backend.stop_compilation_job(self._get_param("CompilationJobName"))
    return EmptyResult()


def replacements() -> Iterable[tuple[object, str, Callable[[Any], Any]]]:
    """(owner, attribute, make(original) -> replacement) for every SageMaker patch."""
    from moto.sagemaker.models import SageMakerModelBackend
    from moto.sagemaker.responses import SageMakerResponse

    backend = SageMakerModelBackend
    return [
        (backend, "create_training_job", _create_training_job),
        (backend, "describe_training_job", _describe_training_job),
        (backend, "list_training_jobs", _list_training_jobs),
        (backend, "stop_training_job", lambda _original: _stop_training_job),
        (backend, "create_compilation_job", _create_compilation_job),
        (backend, "describe_compilation_job", _describe_compilation_job),
        (backend, "list_compilation_jobs", _list_compilation_jobs),
        (backend, "stop_compilation_job", lambda _original: _stop_compilation_job),
        (SageMakerResponse, "stop_training_job", lambda _original: _stop_training_job_response),
        (SageMakerResponse, "stop_compilation_job", lambda _original: _stop_compilation_job_response),
    ]
