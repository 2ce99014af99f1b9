"""One poll of a SageMaker job (processing, training or Neo compilation): the part the wait loops share.

The two APIs spell the same life cycle differently (``Completed`` vs ``COMPLETED``, ``Stopping`` vs
``STOPPING``); a :class:`JobKind` names the spellings, and :func:`poll` turns one Describe call
into "still running", "done (with its artifact)", or a typed failure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from botocore.exceptions import ClientError

from lambda_handlers.aws import clients
from lambda_handlers.aws.client_errors import ALREADY_EXISTS, SAGEMAKER_NOT_FOUND, error_code
from lambda_handlers.errors import CompilationFailed, PipelineError, PreparationFailed, StepTimedOut, TrainingFailed
from lambda_handlers.state import RunState, past


@dataclass(frozen=True)
class JobKind:
    """How one kind of SageMaker job is described, stopped and reported."""

    noun: str  # "training job"
    section: Literal["preparation", "training", "compilation"]  # the run state's section: job_name, deadline
    api: str  # "training_job" → describe_training_job / stop_training_job
    name_parameter: str  # "TrainingJobName"
    status_field: str  # "TrainingJobStatus"
    completed: str
    failed: str
    stopped: str
    running: frozenset[str]
    stoppable: frozenset[str]  # running statuses in which a timeout stops the job
    error: type[PipelineError]
    has_artifact: bool = True  # a completed job names ModelArtifacts.S3ModelArtifacts (not processing jobs)

    def find(self, name: str) -> dict[str, Any] | None:
        """Describe<Kind>Job, or None if there is no such job.

        The service model declares ResourceNotFound; SageMaker answers ValidationException for an
        unknown (well-formed) name today. Both mean "not found" here (``client_errors.SAGEMAKER_NOT_FOUND``).
        """
        try:
            job: dict[str, Any] = getattr(clients.sagemaker(), f"describe_{self.api}")(**{self.name_parameter: name})
        except ClientError as error:
            if error_code(error) in SAGEMAKER_NOT_FOUND:
                return None
            raise
        return job

    def describe(self, name: str) -> dict[str, Any]:
        """Describe<Kind>Job of a job the run started: one that vanished fails the step."""
        job = self.find(name)
        if job is None:
            raise self.error(f"{self.noun} {name} no longer exists (DescribeJob: not found)")
        return job

    def start(self, request: Mapping[str, Any]) -> Any:
        """Create<Kind>Job; a name already taken (by an earlier attempt of the step) adopts that job.

        Returns the job's CreationTime, from which its wait loop's deadline counts.
        """
        try:
            getattr(clients.sagemaker(), f"create_{self.api}")(**request)
        except ClientError as error:
            if error_code(error) not in ALREADY_EXISTS:
                raise
        return self.describe(str(request[self.name_parameter])).get("CreationTime")

    def stop(self, name: str) -> None:
        """Stop<Kind>Job."""
        getattr(clients.sagemaker(), f"stop_{self.api}")(**{self.name_parameter: name})


def poll(kind: JobKind, state: RunState, timeout_seconds: int) -> tuple[bool, dict[str, Any]]:
    """(done, job) for the run's job; raises ``kind.error`` on failure, StepTimedOut past the deadline.

    Done means completed (with ``ModelArtifacts.S3ModelArtifacts`` where the kind has one); a job still running past the
    section's deadline is stopped (unless already stopping) before StepTimedOut is raised.
    """
    section = state[kind.section]
    name = section["job_name"]
    job = kind.describe(name)
    status = job.get(kind.status_field)
    if status == kind.completed:
        if kind.has_artifact and not (job.get("ModelArtifacts") or {}).get("S3ModelArtifacts"):
            raise kind.error(f"{kind.noun} {name} completed without ModelArtifacts.S3ModelArtifacts")
        return True, job
    if status in (kind.failed, kind.stopped):
        verb = "failed" if status == kind.failed else "was stopped"
        # A processing container's own account of the failure is its ExitMessage (/opt/ml/output/message).
        reasons = [str(job[k]) for k in ("ExitMessage", "FailureReason") if job.get(k)]
        raise kind.error(f"{kind.noun} {name} {verb}: {'; '.join(reasons) or 'no FailureReason given'}")
    if status not in kind.running:
        raise kind.error(f"{kind.noun} {name} is {status}")
    if past(int(section["deadline"])):
        action = "it is already stopping"
        if status in kind.stoppable:
            try:
                kind.stop(name)
                action = "stopped it"
            except ClientError as error:  # e.g. it finished meanwhile: the timeout is still the news
                action = f"could not stop it ({error_code(error) or 'error'})"
        raise StepTimedOut(f"{kind.noun} {name} still {status} after the {timeout_seconds} s timeout; {action}")
    return False, job


PROCESSING_JOB = JobKind(
    noun="processing job",
    section="preparation",
    api="processing_job",
    name_parameter="ProcessingJobName",
    status_field="ProcessingJobStatus",
    completed="Completed",
    failed="Failed",
    stopped="Stopped",
    running=frozenset({"InProgress", "Stopping"}),
    stoppable=frozenset({"InProgress"}),
    error=PreparationFailed,
    has_artifact=False,
)

TRAINING_JOB = JobKind(
    noun="training job",
    section="training",
    api="training_job",
    name_parameter="TrainingJobName",
    status_field="TrainingJobStatus",
    completed="Completed",
    failed="Failed",
    stopped="Stopped",
    running=frozenset({"InProgress", "Stopping"}),
    stoppable=frozenset({"InProgress"}),
    error=TrainingFailed,
)


_NEO_RUNNING = frozenset({"STARTING", "INPROGRESS", "STOPPING"})
COMPILATION_JOB = JobKind(
    noun="compilation job",
    section="compilation",
    api="compilation_job",
    name_parameter="CompilationJobName",
    status_field="CompilationJobStatus",
    completed="COMPLETED",
    failed="FAILED",
    stopped="STOPPED",
    running=_NEO_RUNNING,
    stoppable=_NEO_RUNNING - {"STOPPING"},
    error=CompilationFailed,
)
