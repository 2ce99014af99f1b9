"""Typed failures. The state machine retries and catches them by class name (the Lambda errorType).

Retried with backoff: :class:`Throttled`, :class:`TransientError`. Everything else goes to the
failure path, where ``notify`` reports the step and the message verbatim.
"""

from __future__ import annotations


class PipelineError(Exception):
    """Base of every failure a step raises on purpose."""


class InvalidInput(PipelineError):
    """The execution input names something that cannot be used; nothing has been started."""


class PreparationFailed(PipelineError):
    """The data preparation job failed or was stopped (message: the data set's rejection reason, verbatim)."""


class TrainingFailed(PipelineError):
    """SageMaker reported Failed or Stopped for the training job (message: its FailureReason)."""


class MetricBelowThreshold(PipelineError):
    """The evaluation gate was not met: "metric X = v below threshold t"."""


class CompilationFailed(PipelineError):
    """SageMaker Neo reported FAILED or STOPPED (message: its FailureReason, verbatim)."""


class PackageRegistrationFailed(PipelineError):
    """Panorama reported FAILED for the package version (message: its StatusDescription)."""


class DeploymentFailed(PipelineError):
    """An application instance reached DEPLOYMENT_FAILED or ERROR."""


class StepTimedOut(PipelineError):
    """A wait loop exceeded its configured timeout."""


class Throttled(PipelineError):
    """An AWS API throttled the call; the state machine retries with backoff."""


class TransientError(PipelineError):
    """An AWS API failed server-side (5xx); the state machine retries with backoff."""


#: Error names the state machine retries (plus the Lambda service's own transient errors).
RETRYABLE = (Throttled.__name__, TransientError.__name__)
