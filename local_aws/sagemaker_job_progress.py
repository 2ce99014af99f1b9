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
import functools
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
# What differs between training and compilation jobs
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Kind:
    """One kind of job: where moto keeps it, how its statuses are spelled, what its API raises."""

    #: ``training`` / ``compilation``: moto's names are ``<label>_jobs``, ``<label>_job_status``, ...
    label: JobKind
    #: The API's spelling of a status given in CamelCase (compilation jobs: upper case).
    spell: Callable[[str], str]
    #: Statuses in which Stop*Job is accepted.
    stoppable: tuple[str, ...]
    #: Write the job's output when it ends well: the failure reason instead, or None (then artifacts are set).
    finish: Callable[[Any, Any, _Job, datetime], str | None]
    #: The error for Stop*Job on an unknown job name.
    not_found: Callable[[str], Exception]
    #: The error for Stop*Job on a job that is not running: (name, status).
    cannot_stop: Callable[[str, str], Exception]
    #: Training: SecondaryStatus (and its transitions) follow the status.
    secondary_status: bool = False
    #: Compilation: Describe*Job leaves out the fields that are not set.
    drop_none: bool = False

    @property
    def jobs(self) -> str:
        """The backend's attribute holding the jobs by name."""
        return f"{self.label}_jobs"

    def status_of(self, job: Any) -> str:
        """The status of ``job``."""
        return str(getattr(job, f"{self.label}_job_status"))

    def set_status(self, job: Any, status: str) -> None:
        """Set the status of ``job`` (spelled as given)."""
        setattr(job, f"{self.label}_job_status", status)


def _advance(kind: _Kind, backend: Any, job: Any, describing: bool) -> None:
    """Move one moto job along: running → Completed / Failed / Stopped."""
    record = TRACKER.get(job.arn)
    if record is None or record.ended:
        return
    if describing:
        record.describes += 1
    now = _now()
    job.last_modified_time = now
    if record.stop_requested:
        _end(kind, job, record, "Stopped", now)
        return
    if TRACKER.still_running(record):
        kind.set_status(job, kind.spell("InProgress"))
        if kind.secondary_status:
            job.secondary_status = "Training" if record.describes > 1 else "Starting"
        return
    reason = kind.finish(backend, job, record, now)
    if reason is not None:
        job.failure_reason = reason
        _end(kind, job, record, "Failed", now)
        return
    _end(kind, job, record, "Completed", now)


def _end(kind: _Kind, job: Any, record: _Job, status: str, now: datetime) -> None:
    """End ``job`` with ``status`` (CamelCase, spelled for the kind here)."""
    record.ended = True
    kind.set_status(job, kind.spell(status))
    setattr(job, f"{kind.label}_end_time", now)
    if kind.secondary_status:
        job.secondary_status = status
        job.secondary_status_transitions = [
            {"Status": "Starting", "StartTime": job.creation_time, "EndTime": job.training_start_time},
            {"Status": "Training", "StartTime": job.training_start_time, "EndTime": now},
            {"Status": status, "StartTime": now, "EndTime": now},
        ]


def _start(kind: _Kind, job: Any, name: str, metric_names: list[str]) -> None:
    """A newly created job is running, without artifacts yet, and tracked."""
    kind.set_status(job, kind.spell("InProgress"))
    setattr(job, f"{kind.label}_end_time", None)
    job.model_artifacts = None
    TRACKER.track(job.arn, _Job(kind.label, name, time.monotonic(), metric_names))


def _describe_job(kind: _Kind, original: Callable[..., Any]) -> Callable[..., Any]:
    """Describe*Job: one more look at the job, which may end it."""

    def describe_job(self: Any, *args: Any, **kwargs: Any) -> Any:
        job_name = args[0] if args else kwargs[f"{kind.label}_job_name"]  # moto passes it either way
        job = getattr(self, kind.jobs).get(job_name)
        if job is not None:
            _advance(kind, self, job, describing=True)
        description = original(self, *args, **kwargs)
        if kind.drop_none:
            return {key: value for key, value in description.items() if value is not None}
        return description

    return describe_job


def _list_jobs(kind: _Kind, original: Callable[..., Any]) -> Callable[..., Any]:
    """List*Jobs: statuses as of now (a list is not a describe: no describe is counted)."""

    def list_jobs(self: Any, *args: Any, **kwargs: Any) -> Any:
        for job in list(getattr(self, kind.jobs).values()):
            _advance(kind, self, job, describing=False)
        return original(self, *args, **kwargs)

    return list_jobs


def _stop_job(kind: _Kind) -> Callable[[Any, str], None]:
    """Stop*Job (moto: not implemented): a running job goes Stopping, then Stopped."""

    def stop_job(self: Any, job_name: str) -> None:
        job = getattr(self, kind.jobs).get(job_name)
        if job is None:
            raise kind.not_found(job_name)
        record = TRACKER.get(job.arn)
        if record is None or record.ended or kind.status_of(job) not in kind.stoppable:
            raise kind.cannot_stop(job_name, kind.status_of(job))
        record.stop_requested = True
        kind.set_status(job, kind.spell("Stopping"))
        if kind.secondary_status:
            job.secondary_status = "Stopping"
        job.last_modified_time = _now()

    return stop_job


def _stop_job_response(kind: _Kind) -> Callable[[Any], Any]:
    """The response class's Stop*Job (moto does not route it): the backend's, with the job name parameter."""

    def stop_job_response(self: Any) -> Any:
        from moto.core.responses import EmptyResult

        stop = getattr(self.sagemaker_backend, f"stop_{kind.label}_job")
        stop(self._get_param(f"{kind.label.capitalize()}JobName"))
        return EmptyResult()

    return stop_job_response


def _validation_error(message: str) -> Exception:
    from moto.sagemaker.exceptions import ValidationError

    return ValidationError(message=message)


def _resource_not_found(message: str) -> Exception:
    from moto.sagemaker.exceptions import ResourceNotFound

    return ResourceNotFound(message=message)


# --------------------------------------------------------------------------------------------------
# Training jobs
# --------------------------------------------------------------------------------------------------


def _finish_training(backend: Any, job: Any, record: _Job, now: datetime) -> str | None:
    """Write model.tar.gz and report the final metrics (or why the job fails)."""
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
        return reason
    job.model_artifacts = {"S3ModelArtifacts": artifact_uri}
    job.final_metric_data_list = [
        {"MetricName": name, "Value": TRACKER.metric_value(job.training_job_name, name), "Timestamp": now}
        for name in record.metric_names
    ]
    return None


TRAINING = _Kind(
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
        job.secondary_status = "Starting"
        job.final_metric_data_list = None
        job.secondary_status_transitions = [
            {"Status": "Starting", "StartTime": job.creation_time, "StatusMessage": "Starting the training job"}
        ]
        _start(TRAINING, job, training_job_name, names)
        return job

    return create_training_job


# --------------------------------------------------------------------------------------------------
# Compilation jobs
# --------------------------------------------------------------------------------------------------


def _finish_compilation(backend: Any, job: Any, record: _Job, now: datetime) -> str | None:
    """Write the compiled model where Neo would (or say why the job fails)."""
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
        return reason
    job.model_artifacts = {"S3ModelArtifacts": output_uri}
    return None


COMPILATION = _Kind(
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
        _start(COMPILATION, job, compilation_job_name, [])
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


def replacements() -> Iterable[tuple[object, str, Callable[[Any], Any]]]:
    """(owner, attribute, make(original) -> replacement) for every SageMaker patch."""
    from moto.sagemaker.models import SageMakerModelBackend
    from moto.sagemaker.responses import SageMakerResponse

    backend = SageMakerModelBackend
    patches: list[tuple[object, str, Callable[[Any], Any]]] = [
        (backend, "create_training_job", _create_training_job),
        (backend, "create_compilation_job", _create_compilation_job),
    ]
    for kind in (TRAINING, COMPILATION):
        patches += [
            (backend, f"describe_{kind.label}_job", functools.partial(_describe_job, kind)),
            (backend, f"list_{kind.label}_jobs", functools.partial(_list_jobs, kind)),
            (backend, f"stop_{kind.label}_job", _new(_stop_job(kind))),
            (SageMakerResponse, f"stop_{kind.label}_job", _new(_stop_job_response(kind))),
        ]
    return patches
