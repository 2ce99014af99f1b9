"""SageMaker training and Neo compilation jobs that take several polls, like real ones (moto's are done at once).

moto 5.2.5 marks a training or compilation job Completed the moment it is created, reports a made-up
metric (``train:progress``) and does not implement StopTrainingJob or StopCompilationJob, so the
pipeline's wait loops, its metric gate and its failure handling would never be exercised. Here a
job stays InProgress for a configurable number of Describe calls and/or seconds
(:class:`SageMakerSettings`), then ends:

- Completed, with its model artifact (``sagemaker_job_artifacts``); a training job reports
  FinalMetricDataList for the names of its MetricDefinitions, or — for a built-in algorithm, which
  defines its own — for the names in ``SageMakerSettings.metrics`` (``validation:accuracy`` for
  image-classification), with values a test or ``make local`` may set (:meth:`JobTracker.set_metrics`);
- Failed, with a FailureReason, when the job's name contains one of ``SageMakerSettings.fail_jobs``
  or a failure was requested at run time (:meth:`JobTracker.request_failure`, the emulator's control
  route ``POST /_panopipe/sagemaker/fail``), or when its artifact cannot be written;
- Stopped, after Stopping, when Stop*Job is called while it runs.

That is the placeholder mode (the default, for fast tests). With ``SageMakerSettings.run_training``
a training job's code really runs (``sagemaker_job_container``): the job is InProgress while its
process runs, and ends with the process — Completed with its real model and the metrics its log
shows, Failed with its reason, Stopped when stopped or past MaxRuntimeInSeconds.

Progress is evaluated when a job is described or listed (the only moments a client can observe it).
This module is the machinery common to both kinds; ``sagemaker_job_kinds`` defines the two.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from local_aws.sagemaker_job_container import ContainerJob

#: The gate metric of SageMaker's built-in image-classification algorithm and its training twin.
_DEFAULT_METRICS: Mapping[str, float] = {"validation:accuracy": 0.93, "train:accuracy": 0.95}

_JobLabel = Literal["training", "compilation"]


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
    metrics: dict[str, float] = field(default_factory=lambda: dict(_DEFAULT_METRICS))
    #: The value of a metric a job defines (MetricDefinitions) that ``metrics`` does not name.
    default_metric_value: float = 0.93
    #: Run training jobs for real (``sagemaker_job_container``) instead of the placeholder progress:
    #: the emulator's command line (``make local``) does; in-process tests keep the fast placeholder.
    run_training: bool = False
    #: Where real training jobs' folders go (None: ``.panopipe/jobs`` or $PANOPIPE_JOBS_DIR).
    jobs_dir: Path | None = None
    #: The python that runs real training jobs (None: the ML environment's, created on first use).
    training_python: Path | None = None


@dataclass
class JobRecord:
    """The emulator's record of one job (kept beside moto's object, whose ``__dict__`` is its response)."""

    kind: _JobLabel
    name: str
    started: float  # time.monotonic()
    metric_names: list[str]
    describes: int = 0
    stop_requested: bool = False
    ended: bool = False
    #: The running code of a real training job (``SageMakerSettings.run_training``).
    container: ContainerJob | None = None


class JobTracker:
    """Progress of every job created while the patches are installed, and the requests about them."""

    def __init__(self, settings: SageMakerSettings | None = None) -> None:
        """Track jobs with ``settings`` (replaceable later with :meth:`configure`)."""
        self.settings = settings or SageMakerSettings()
        self._lock = threading.RLock()
        self._jobs: dict[str, JobRecord] = {}  # by job ARN
        self._failures: dict[str, str] = {}  # name substring -> reason
        self._metrics: list[tuple[str, dict[str, float]]] = []  # (name substring, metric values)

    def configure(self, settings: SageMakerSettings) -> None:
        """Use ``settings`` from now on (jobs already running keep their start time)."""
        with self._lock:
            self.settings = settings

    def reset(self) -> None:
        """Forget every job and request (the emulator's state was reset)."""
        with self._lock:
            containers = [job.container for job in self._jobs.values() if job.container is not None]
            self._jobs.clear()
            self._failures.clear()
            self._metrics.clear()
        for container in containers:
            container.stop(grace=1.0)

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

    def requested_metric(self, job: str, metric: str) -> float | None:
        """A run-time request's value of ``metric`` for ``job`` (:meth:`set_metrics`), or None."""
        with self._lock:
            for part, values in reversed(self._metrics):
                if part in job and metric in values:
                    return values[metric]
        return None

    def builtin_metric_names(self) -> list[str]:
        """Metric names reported by a job that defines none (a built-in algorithm)."""
        with self._lock:
            return list(self.settings.metrics)

    def track(self, arn: str, job: JobRecord) -> None:
        """Start tracking a newly created job."""
        with self._lock:
            self._jobs[arn] = job

    def get(self, arn: str) -> JobRecord | None:
        """The record of the job ``arn`` (None: created before the patches were installed)."""
        with self._lock:
            return self._jobs.get(arn)

    def still_running(self, job: JobRecord) -> bool:
        """Whether ``job`` must still be reported as running, after counting this look at it."""
        if job.container is not None:
            return not job.container.finished()
        settings = self.settings
        return job.describes <= settings.in_progress_describes or (
            time.monotonic() - job.started < settings.in_progress_seconds
        )


#: The tracker the installed patches use (one emulator per process).
TRACKER = JobTracker()


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class JobKind:
    """One kind of job: where moto keeps it, how its statuses are spelled, what its API raises."""

    #: ``training`` / ``compilation``: moto's names are ``<label>_jobs``, ``<label>_job_status``, ...
    label: _JobLabel
    #: The API's spelling of a status given in CamelCase (compilation jobs: upper case).
    spell: Callable[[str], str]
    #: Statuses in which Stop*Job is accepted.
    stoppable: tuple[str, ...]
    #: Write the job's output when it ends well: the failure reason instead, or None (then artifacts are set).
    finish: Callable[[Any, Any, JobRecord, datetime], str | None]
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


def _advance(kind: JobKind, backend: Any, job: Any, describing: bool) -> None:
    """Move one moto job along: running → Completed / Failed / Stopped."""
    record = TRACKER.get(job.arn)
    if record is None or record.ended:
        return
    if describing:
        record.describes += 1
    now = _utc_now()
    job.last_modified_time = now
    if record.stop_requested:
        _end(kind, job, record, "Stopped", now)
        return
    if record.container is not None and record.container.finished() and record.container.timed_out:
        _end(kind, job, record, "Stopped", now)
        job.secondary_status = "MaxRuntimeExceeded"
        return
    if TRACKER.still_running(record):
        kind.set_status(job, kind.spell("InProgress"))
        if kind.secondary_status:
            if record.container is not None:  # Downloading (channels, code) until the process runs
                job.secondary_status = record.container.phase
            else:
                job.secondary_status = "Training" if record.describes > 1 else "Starting"
        return
    reason = kind.finish(backend, job, record, now)
    if reason is not None:
        job.failure_reason = reason
        _end(kind, job, record, "Failed", now)
        return
    _end(kind, job, record, "Completed", now)


def _end(kind: JobKind, job: Any, record: JobRecord, status: str, now: datetime) -> None:
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


def start_job(kind: JobKind, job: Any, name: str, metric_names: list[str]) -> None:
    """A newly created job is running, without artifacts yet, and tracked."""
    kind.set_status(job, kind.spell("InProgress"))
    setattr(job, f"{kind.label}_end_time", None)
    job.model_artifacts = None
    TRACKER.track(job.arn, JobRecord(kind.label, name, time.monotonic(), metric_names))


def describe_job_patch(kind: JobKind, original: Callable[..., Any]) -> Callable[..., Any]:
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


def list_jobs_patch(kind: JobKind, original: Callable[..., Any]) -> Callable[..., Any]:
    """List*Jobs: statuses as of now (a list is not a describe: no describe is counted)."""

    def list_jobs(self: Any, *args: Any, **kwargs: Any) -> Any:
        for job in list(getattr(self, kind.jobs).values()):
            _advance(kind, self, job, describing=False)
        return original(self, *args, **kwargs)

    return list_jobs


def stop_job_operation(kind: JobKind) -> Callable[[Any, str], None]:
    """Stop*Job (moto: not implemented): a running job goes Stopping, then Stopped."""

    def stop_job(self: Any, job_name: str) -> None:
        job = getattr(self, kind.jobs).get(job_name)
        if job is None:
            raise kind.not_found(job_name)
        record = TRACKER.get(job.arn)
        if record is None or record.ended or kind.status_of(job) not in kind.stoppable:
            raise kind.cannot_stop(job_name, kind.status_of(job))
        record.stop_requested = True
        if record.container is not None:  # SIGTERM, then SIGKILL: not in the request's thread
            threading.Thread(target=record.container.stop, name=f"stop-{job_name}", daemon=True).start()
        kind.set_status(job, kind.spell("Stopping"))
        if kind.secondary_status:
            job.secondary_status = "Stopping"
        job.last_modified_time = _utc_now()

    return stop_job


def stop_job_response(kind: JobKind) -> Callable[[Any], Any]:
    """The response class's Stop*Job (moto does not route it): the backend's, with the job name parameter."""

    def stop_job_response(self: Any) -> Any:
        from moto.core.responses import EmptyResult

        stop = getattr(self.sagemaker_backend, f"stop_{kind.label}_job")
        stop(self._get_param(f"{kind.label.capitalize()}JobName"))
        return EmptyResult()

    return stop_job_response
