"""SageMaker Processing jobs that really run, in the local AWS (moto 5.2.5: Completed at once, nothing run).

The pipeline's data preparation step is a Processing job: ``processing/prepare.py`` in a framework
image. Here the job runs as SageMaker Processing runs a container, without Docker:

- a job folder stands for ``/opt/ml``: every ProcessingInput (S3Prefix, File mode) is downloaded to
  its ``LocalPath`` under it;
- ``AppSpecification.ContainerEntrypoint + ContainerArguments`` run as a subprocess, with any
  argument that starts with ``/opt/ml`` mapped into the folder and ``python3``/``python`` replaced
  by the ML environment's python (``local_aws.ml.environment``: numpy and Pillow, like the image);
- exit 0: every ProcessingOutput's ``LocalPath`` is uploaded to its ``S3Uri`` (with the output
  config's KmsKeyId) and the job is Completed; a non-zero exit fails it with SageMaker's
  FailureReason (``AlgorithmError: See job logs for more information``) and the container's
  ``/opt/ml/output/message`` (first 1 KB) as ``ExitMessage``; past ``MaxRuntimeInSeconds`` it is
  Stopped. Its log is ``log.txt`` in the job folder.

Not emulated (refused with a ClientError FailureReason, never silently run): ManifestFile inputs,
Pipe input mode, dataset-definition inputs, Continuous uploads, more than one instance, network
isolation. The job runs on this machine's CPUs whatever the instance type.

:func:`run_processing_job` is the runner; :func:`replacements` hooks it into moto through the
job progress machinery that training and compilation jobs use (``sagemaker_job_progress``).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, cast
from urllib.parse import urlparse

OPT_ML = "/opt/ml"
MESSAGE_FILE = "output/message"  # under /opt/ml: the container's account of how it ended
MESSAGE_LIMIT = 1024
ALGORITHM_ERROR = "AlgorithmError: See job logs for more information"
PYTHONS = ("python3", "python")


class ObjectStore(Protocol):
    """The emulator's S3, as the runner needs it."""

    def objects(self, bucket: str, prefix: str) -> Iterator[tuple[str, bytes]]:
        """(key, body) of every object whose key starts with ``prefix``."""
        ...

    def put(self, bucket: str, key: str, body: bytes, kms_key_id: str | None) -> None:
        """Write one object."""
        ...


@dataclass(frozen=True)
class Outcome:
    """How a processing job ended: ``Completed``, ``Failed`` or ``Stopped``, and why."""

    status: str
    failure_reason: str | None = None
    exit_message: str | None = None


class Refused(Exception):
    """A request the local AWS does not run (the message is the job's FailureReason)."""


def _split(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise Refused(f"ClientError: {uri!r} is not an s3:// URI")
    return parsed.netloc, parsed.path.lstrip("/")


def mapped(value: str, root: Path) -> str:
    """``value`` with a leading ``/opt/ml`` replaced by the job folder ``root``."""
    if value == OPT_ML or value.startswith(OPT_ML + "/"):
        return str(root) + value[len(OPT_ML) :]
    return value


def command(app: Mapping[str, Any], root: Path, python: Path) -> list[str]:
    """The container's command line: entrypoint + arguments, paths mapped, ``python3`` the ML python."""
    entrypoint = [str(part) for part in app.get("ContainerEntrypoint") or []]
    if not entrypoint:
        raise Refused("ClientError: the local AWS runs only jobs with AppSpecification.ContainerEntrypoint")
    argv = [*entrypoint, *(str(a) for a in app.get("ContainerArguments") or [])]
    if argv[0] in PYTHONS:
        argv[0] = str(python)
    return [mapped(part, root) for part in argv]


def download_inputs(inputs: Sequence[Mapping[str, Any]], store: ObjectStore, root: Path) -> None:
    """Each S3Input's objects under its LocalPath (relative to the prefix, as SageMaker lays them out)."""
    for given in inputs:
        s3 = given.get("S3Input")
        if s3 is None:
            raise Refused(f"ClientError: input {given.get('InputName')}: the local AWS supports only S3Input")
        if s3.get("S3DataType", "S3Prefix") != "S3Prefix" or s3.get("S3InputMode", "File") != "File":
            raise Refused(
                f"ClientError: input {given.get('InputName')}: the local AWS supports only S3Prefix in File mode"
            )
        bucket, prefix = _split(str(s3["S3Uri"]))
        local = Path(mapped(str(s3["LocalPath"]), root))
        local.mkdir(parents=True, exist_ok=True)
        found = False
        for key, body in store.objects(bucket, prefix):
            if key.endswith("/"):
                continue
            relative = key[len(prefix) :].lstrip("/") or key.rsplit("/", 1)[-1]
            target = local / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(body)
            found = True
        if not found:
            raise Refused(f"ClientError: input {given.get('InputName')}: no objects under {s3['S3Uri']}")


def upload_outputs(config: Mapping[str, Any], store: ObjectStore, root: Path) -> None:
    """Every file under each output's LocalPath, to its S3Uri (EndOfJob upload)."""
    kms = config.get("KmsKeyId")
    for output in config.get("Outputs") or []:
        s3 = output.get("S3Output")
        if s3 is None:
            raise Refused(f"ClientError: output {output.get('OutputName')}: the local AWS supports only S3Output")
        if s3.get("S3UploadMode", "EndOfJob") != "EndOfJob":
            raise Refused(f"ClientError: output {output.get('OutputName')}: the local AWS uploads only at EndOfJob")
        bucket, prefix = _split(str(s3["S3Uri"]))
        local = Path(mapped(str(s3["LocalPath"]), root))
        for path in sorted(p for p in local.rglob("*") if p.is_file()) if local.is_dir() else []:
            key = f"{prefix.rstrip('/')}/{path.relative_to(local).as_posix()}" if prefix else path.name
            try:
                store.put(bucket, key, path.read_bytes(), kms)
            except Exception as error:  # e.g. no such bucket
                raise Refused(f"ClientError: unable to upload s3://{bucket}/{key}: {error}") from None


class ProcessingRun:
    """One job's run in a background thread; ``finished()``/``timed_out``/``stop()`` as the tracker expects."""

    def __init__(self, request: Mapping[str, Any], store: ObjectStore, workdir: Path, python: Callable[[], Path]):
        self.request, self.store, self.workdir, self.python = request, store, workdir, python
        self.outcome: Outcome | None = None
        self.timed_out = False
        self._stop = threading.Event()
        self._process: subprocess.Popen[bytes] | None = None
        self._thread = threading.Thread(target=self._run, name=f"processing-{workdir.name}", daemon=True)

    def start(self) -> ProcessingRun:
        """Start the run; returns itself."""
        self._thread.start()
        return self

    def finished(self) -> bool:
        """Whether the job has ended (its outputs uploaded, if it succeeded)."""
        return self.outcome is not None

    def wait(self, timeout: float | None = None) -> Outcome | None:
        """The outcome, waiting up to ``timeout`` seconds."""
        self._thread.join(timeout)
        return self.outcome

    def stop(self, grace: float = 1.0) -> None:
        """StopProcessingJob or the emulator's reset: end the process (terminate, then kill)."""
        self._stop.set()
        process = self._process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(grace)
            except subprocess.TimeoutExpired:
                process.kill()

    def _run(self) -> None:
        try:
            self.outcome = self._execute()
        except Refused as refused:
            self.outcome = Outcome("Failed", str(refused))
        except Exception as error:  # the emulator's own fault: still an ended job, with the reason
            self.outcome = Outcome("Failed", f"InternalServerError: the local AWS could not run the job: {error}")

    def _execute(self) -> Outcome:
        request, root = self.request, self.workdir / "opt-ml"
        shutil.rmtree(self.workdir, ignore_errors=True)
        (root / "output").mkdir(parents=True)
        cluster = (request.get("ProcessingResources") or {}).get("ClusterConfig") or {}
        if int(cluster.get("InstanceCount", 1)) != 1:
            raise Refused("ClientError: the local AWS runs processing jobs on one instance only")
        download_inputs(request.get("ProcessingInputs") or [], self.store, root)
        argv = command(request["AppSpecification"], root, self.python())
        limit = (request.get("StoppingCondition") or {}).get("MaxRuntimeInSeconds")
        environment = {**os.environ, **(request.get("Environment") or {}), "PYTHONUNBUFFERED": "1"}
        for name in ("AWS_ENDPOINT_URL", "VIRTUAL_ENV", "PYTHONPATH"):  # a container knows nothing of ours
            environment.pop(name, None)
        started = time.monotonic()
        with (self.workdir / "log.txt").open("wb") as log:
            self._process = subprocess.Popen(argv, cwd=self.workdir, env=environment, stdout=log, stderr=log)
            while self._process.poll() is None:
                if self._stop.wait(0.1):
                    self.stop()
                    return Outcome("Stopped", "the job was stopped (StopProcessingJob)")
                if limit and time.monotonic() - started > float(limit):
                    self.timed_out = True
                    self.stop()
                    return Outcome("Stopped", f"MaxRuntimeExceeded: the job ran longer than {limit} s")
        message_file = root / MESSAGE_FILE
        message = (
            message_file.read_bytes()[:MESSAGE_LIMIT].decode("utf-8", "replace") if message_file.is_file() else None
        )
        if self._process.returncode != 0:
            return Outcome("Failed", ALGORITHM_ERROR, message)
        upload_outputs(request.get("ProcessingOutputConfig") or {}, self.store, root)
        return Outcome("Completed", None, message)


def run_processing_job(
    request: Mapping[str, Any], store: ObjectStore, workdir: Path, python: Callable[[], Path]
) -> Outcome:
    """Run one job to its end (in the calling thread's time): the synchronous form of :class:`ProcessingRun`."""
    outcome = ProcessingRun(request, store, workdir, python).start().wait()
    assert outcome is not None
    return outcome


# --- moto ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MotoStore:
    """moto's S3 backend of one account and region (the emulator's process)."""

    account_id: str
    region: str

    def _backend(self) -> Any:
        from moto.s3.models import s3_backends
        from moto.utilities.utils import get_partition

        return s3_backends[self.account_id][get_partition(self.region)]

    def objects(self, bucket: str, prefix: str) -> Iterator[tuple[str, bytes]]:
        """(key, body) of every current object of ``bucket`` under ``prefix``."""
        found = self._backend().get_bucket(bucket)
        for key in sorted(k for k in list(found.keys) if k.startswith(prefix)):
            obj = found.keys.get(key)
            if obj is not None:
                yield key, bytes(obj.value)

    def put(self, bucket: str, key: str, body: bytes, kms_key_id: str | None) -> None:
        """Write one object (SSE-KMS when a key is given)."""
        from local_aws.sagemaker_job_artifacts import put_s3

        put_s3(self.account_id, self.region, f"s3://{bucket}/{key}", body, kms_key_id)


def request_of(job: Any) -> dict[str, Any]:
    """The CreateProcessingJob request of a moto job, in the API's field names."""
    return {
        "ProcessingJobName": job.processing_job_name,
        "AppSpecification": job.app_specification or {},
        "ProcessingInputs": job.processing_inputs or [],
        "ProcessingOutputConfig": job.processing_output_config or {},
        "ProcessingResources": getattr(job, "processing_resources", None) or {},
        "StoppingCondition": job.stopping_condition or {},
        "Environment": getattr(job, "environment", None) or {},
    }


def _jobs_folder() -> Path:
    return Path(tempfile.gettempdir()) / "local-aws" / "processing"


def _ml_python() -> Path:
    from local_aws.ml import environment

    return environment.ensure()


def _finish(backend: Any, job: Any, record: Any, now: datetime) -> str | None:
    """The progress machinery's end of a job: the run's outcome (waiting for it if need be)."""
    from local_aws.sagemaker_job_progress import TRACKER

    requested = TRACKER.failure_reason(job.processing_job_name)
    run = cast("ProcessingRun | None", getattr(record, "container", None))
    outcome = run.wait() if run is not None else None
    if outcome is None:
        return requested or "InternalServerError: the local AWS lost the job's run"
    job.exit_message = outcome.exit_message
    if outcome.status == "Completed":
        return requested
    return outcome.failure_reason or ALGORITHM_ERROR


def _kind() -> Any:
    from local_aws.sagemaker_job_progress import JobKind

    def validation_error(message: str) -> Exception:
        from moto.sagemaker.exceptions import ValidationError

        return ValidationError(message=message)

    return JobKind(
        label=cast(Any, "processing"),  # moto's names: processing_jobs, processing_job_status, processing_end_time
        spell=str,
        stoppable=("InProgress", "Stopping"),
        finish=_finish,
        not_found=lambda name: validation_error(f"Could not find processing job '{name}'."),
        cannot_stop=lambda name, status: validation_error(
            f"Processing job {name} cannot be stopped in status {status}."
        ),
    )


def _create(kind: Any, original: Callable[..., Any]) -> Callable[..., Any]:
    """CreateProcessingJob: the job starts running its container (moto: Completed at once, nothing run).

    A taken name is refused with ResourceInUse, as SageMaker does (moto replaces the job).
    """
    from local_aws.sagemaker_job_progress import TRACKER, start_job

    def create_processing_job(self: Any, *args: Any, **kwargs: Any) -> Any:
        from moto.sagemaker.exceptions import ResourceInUseException

        existing = self.processing_jobs.get(kwargs.get("processing_job_name"))
        if existing is not None:  # moto replaces the job; SageMaker refuses the name
            raise ResourceInUseException(
                message="Processing job names must be unique within an AWS account and region, "
                f"and a processing job with this name already exists ({existing.arn})"
            )
        resources = kwargs.pop("processing_resources", None)
        environment = kwargs.pop("environment", None)
        job = original(self, *args, **kwargs)
        job.processing_resources, job.environment = resources, environment
        job.exit_message = job.failure_reason = None
        name = str(job.processing_job_name)
        start_job(kind, job, name, [])
        record = TRACKER.get(job.arn)
        store = MotoStore(self.account_id, self.region_name)
        run = ProcessingRun(request_of(job), store, _jobs_folder() / name, _ml_python).start()
        if record is not None:
            record.container = cast(Any, run)  # the tracker reports the job running until the run ends
        return job

    return create_processing_job


def replacements() -> list[tuple[object, str, Callable[[Any], Any]]]:
    """(owner, attribute, make(original) -> replacement): the processing job patches of the emulator."""
    from moto.sagemaker.models import SageMakerModelBackend
    from moto.sagemaker.responses import SageMakerResponse

    from local_aws.sagemaker_job_progress import (
        describe_job_patch,
        list_jobs_patch,
        stop_job_operation,
        stop_job_response,
    )

    kind = _kind()

    def new(operation: Callable[..., Any]) -> Callable[[Any], Any]:
        return lambda _original: operation

    return [
        (SageMakerModelBackend, "create_processing_job", functools.partial(_create, kind)),
        (SageMakerModelBackend, "describe_processing_job", functools.partial(describe_job_patch, kind)),
        (SageMakerModelBackend, "list_processing_jobs", functools.partial(list_jobs_patch, kind)),
        (SageMakerModelBackend, "stop_processing_job", new(stop_job_operation(kind))),
        (SageMakerResponse, "stop_processing_job", new(stop_job_response(kind))),
    ]
