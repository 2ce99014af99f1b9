"""Create*Job requests SageMaker refuses, refused here too: a taken name, a channel of the wrong form.

**Names are unique.** moto 5.2.5 silently replaces the existing job. Real SageMaker refuses CreateTrainingJob and
CreateCompilationJob for a name that exists in the account and Region, whatever the job's status,
with ``ResourceInUse`` (HTTP 400; a modeled error of both operations), and the pipeline relies on
that: a retried Start step adopts the job an earlier attempt created instead of starting a second
one. A local AWS that accepted the duplicate would hide a broken retry, so it refuses as AWS does.

**Channels have the form their data type needs.** moto accepts any InputDataConfig. SageMaker
refuses (ValidationException) an ``AugmentedManifestFile`` channel outside Pipe mode ("only valid in
Pipe mode", the service model says of it) or without ``AttributeNames`` (which fields of each
manifest line to stream): a Ground Truth manifest sent any other way is a job that cannot train.

The same checks serve the emulator (:func:`replacements`, installed by ``moto_patches``) and
in-process tests that use moto's ``mock_aws`` without the emulator (:func:`refuse_what_sagemaker_refuses`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

#: backend method -> (moto's jobs attribute, name parameter, the message's noun)
_CREATES = {
    "create_training_job": ("training_jobs", "training_job_name", "training job"),
    "create_compilation_job": ("compilation_jobs", "compilation_job_name", "compilation job"),
}


def _refusing(method: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """make(original) for ``method``: raise ResourceInUse for a taken name, else call the original."""
    jobs, parameter, noun = _CREATES[method]

    def make(original: Callable[..., Any]) -> Callable[..., Any]:
        def create(self: Any, *args: Any, **kwargs: Any) -> Any:
            from moto.sagemaker.exceptions import ResourceInUseException

            name = kwargs[parameter] if parameter in kwargs else args[0]
            if method == "create_training_job":
                _check_channels(kwargs)
            existing = getattr(self, jobs).get(name)
            if existing is not None:
                raise ResourceInUseException(
                    message=f"{noun.capitalize()} names must be unique within an AWS account and region, "
                    f"and a {noun} with this name already exists ({existing.arn})"
                )
            return original(self, *args, **kwargs)

        return create

    return make


def _check_channels(request: dict[str, Any]) -> None:
    """Refuse channels whose form SageMaker refuses (moto's keyword arguments of CreateTrainingJob)."""
    from moto.sagemaker.exceptions import ValidationError

    default_mode = (request.get("algorithm_specification") or {}).get("TrainingInputMode", "File")
    for channel in request.get("input_data_config") or []:
        source = (channel.get("DataSource") or {}).get("S3DataSource") or {}
        if source.get("S3DataType") != "AugmentedManifestFile":
            continue
        name, mode = channel.get("ChannelName"), channel.get("InputMode") or default_mode
        if mode != "Pipe":
            raise ValidationError(
                message=f"Channel {name}: S3DataType AugmentedManifestFile is supported only in Pipe input mode "
                f"(the channel's input mode is {mode})"
            )
        if not source.get("AttributeNames"):
            raise ValidationError(
                message=f"Channel {name}: AttributeNames are required with S3DataType AugmentedManifestFile"
            )


def replacements() -> list[tuple[object, str, Callable[[Any], Any]]]:
    """(owner, attribute, make(original) -> replacement) for CreateTrainingJob and CreateCompilationJob."""
    from moto.sagemaker.models import SageMakerModelBackend

    return [(SageMakerModelBackend, method, _refusing(method)) for method in _CREATES]


@contextlib.contextmanager
def refuse_what_sagemaker_refuses() -> Iterator[None]:
    """While open, moto (e.g. under ``mock_aws``) refuses what SageMaker refuses.

    A taken job name (ResourceInUse), a channel of the wrong form (ValidationException).

    Patches moto's SageMaker backend class in this process and puts the originals back on exit::

        with mock_aws(), refuse_what_sagemaker_refuses():
            sagemaker.create_training_job(TrainingJobName="t", ...)
            sagemaker.create_training_job(TrainingJobName="t", ...)  # ClientError: ResourceInUse
    """
    undo: list[tuple[object, str, Any]] = []
    try:
        for owner, name, make in replacements():
            original = vars(owner)[name]
            undo.append((owner, name, original))
            setattr(owner, name, make(getattr(owner, name)))
        yield
    finally:
        for owner, name, original in reversed(undo):
            setattr(owner, name, original)
