"""The project's extensions of moto 5.2.5 (pinned) for the local AWS: one :func:`install`, reversible.

moto in server mode is the local AWS; what it lacks for the pipeline is patched by one module per
service, each saying which moto limitation it addresses and why the pipeline needs it:

==========================  ===============================================================
module                      moto 5.2.5 limitation
==========================  ===============================================================
``moto_lambda``             Lambda runs no code without Docker; public layers (Powertools)
                            unknown
``moto_eventbridge``        rules cannot target Lambda functions or state machines
``moto_stepfunctions``      CloudFormation-created state machines do not run; unnamed
                            executions collide; datetimes in task results break
                            DescribeExecution
``moto_s3_conditional``     S3 conditional writes check, then write: concurrent ones to one
                            key all succeed; CopyObject's and CompleteMultipartUpload's
                            If-Match / If-None-Match ignored
``cfn_change_sets``         change sets lose Outputs, fail with HTTP 500, collide across stacks
``cfn_intrinsics``          no Fn::GetStackOutput
``cfn_custom_resources``    custom resources unreachable, never updated or deleted
``cfn_stack_deletion``      no termination protection; resources deleted in any order
``cfn_resource_types``      no AWS::CloudWatch::Alarm; bucket versioning and EventBridge
                            notifications ignored
``cfn_events``              no per-resource stack events
``sagemaker_job_kinds``     training and compilation jobs done at once, without artifacts;
                            no Stop*Job; no job code runs (with ``sagemaker_job_progress``,
                            ``sagemaker_job_artifacts``, ``sagemaker_job_container``)
``sagemaker_job_requests``  a job created with an existing name silently replaces it; any
                            channel form is accepted (AugmentedManifestFile outside Pipe)
``sagemaker_processing``    processing jobs are Completed at once and run nothing
==========================  ===============================================================

Each module's ``replacements()`` lists ``(owner, attribute, make(original) -> replacement)``.
:func:`install` applies them all and :func:`uninstall` puts every original back, so tests that use
moto's in-process mocks are not affected afterwards. Patches change process-wide state (moto's
classes and configuration, ``MOTO_PORT``): one emulator per process.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from local_aws import (
    cfn_change_sets,
    cfn_custom_resources,
    cfn_events,
    cfn_intrinsics,
    cfn_resource_types,
    cfn_stack_deletion,
    moto_eventbridge,
    moto_lambda,
    moto_s3_conditional,
    moto_stepfunctions,
    sagemaker_job_kinds,
    sagemaker_job_progress,
    sagemaker_job_requests,
    sagemaker_processing,
)
from local_aws.lambda_runner import LambdaRunner
from local_aws.sagemaker_job_progress import SageMakerSettings

LOG = logging.getLogger(__name__)

_MISSING = object()


def default_lambda_cache_dir() -> Path:
    """Where function code is extracted by default (shared by emulators: entries are per code hash)."""
    return Path(tempfile.gettempdir()) / "local-aws" / "lambda"


@dataclass(frozen=True)
class PatchSettings:
    """What the patches need: where the emulator listens, and how jobs and functions behave."""

    #: The emulator as clients reach it: ``http://localhost:PORT`` (not 127.0.0.1: moto then misreads
    #: the S3 template URLs the CDK CLI passes to CloudFormation).
    endpoint: str
    #: Where function code is extracted, once per code hash.
    lambda_cache_dir: Path = field(default_factory=default_lambda_cache_dir)
    #: How SageMaker training and compilation jobs progress.
    sagemaker: SageMakerSettings = field(default_factory=SageMakerSettings)

    @property
    def port(self) -> int:
        """The port of :attr:`endpoint`."""
        return int(self.endpoint.rsplit(":", 1)[1].split("/", 1)[0])


class _Patcher:
    """Replaces attributes and mapping items, remembering the originals to put them back."""

    def __init__(self) -> None:
        self._undo: list[Callable[[], None]] = []

    def replace(self, owner: object, name: str, make: Callable[[Any], Any]) -> None:
        """Set ``owner.name`` to ``make(original)`` (original: the current value, or None if absent)."""
        original = owner.__dict__.get(name, _MISSING) if isinstance(owner, type) else getattr(owner, name, _MISSING)
        current = getattr(owner, name, None)
        setattr(owner, name, make(current))
        if original is _MISSING:
            self._undo.append(lambda: delattr(owner, name))
        else:
            self._undo.append(lambda: setattr(owner, name, original))

    def replace_all(self, replacements: Iterable[tuple[object, str, Callable[[Any], Any]]]) -> None:
        """:meth:`replace` for each ``(owner, name, make)``."""
        for owner, name, make in replacements:
            self.replace(owner, name, make)

    def set_item(self, mapping: Any, key: str, value: Any) -> None:
        """Set ``mapping[key] = value`` (a dict, or ``os.environ``)."""
        original = mapping.get(key, _MISSING)
        mapping[key] = value

        def undo() -> None:
            if original is _MISSING:
                mapping.pop(key, None)
            else:
                mapping[key] = original

        self._undo.append(undo)

    def undo(self) -> None:
        """Put every original back, newest first."""
        while self._undo:
            self._undo.pop()()


@dataclass
class _Installation:
    settings: PatchSettings
    patcher: _Patcher
    runner: LambdaRunner


_LOCK = threading.Lock()
_INSTALLED: _Installation | None = None


def install(settings: PatchSettings) -> None:
    """Apply every patch; raises RuntimeError when they are installed already (one emulator per process)."""
    global _INSTALLED
    with _LOCK:
        if _INSTALLED is not None:
            raise RuntimeError(f"the moto patches are installed already (for {_INSTALLED.settings.endpoint})")
        patcher = _Patcher()
        runner = _new_runner(settings)
        try:
            _configure_moto(patcher, settings)
            cfn_custom_resources.configure(settings.endpoint)
            sagemaker_job_progress.TRACKER.configure(settings.sagemaker)
            for replacements in (
                moto_lambda.replacements(lambda_runner),
                moto_eventbridge.replacements(),
                moto_stepfunctions.replacements(),
                moto_s3_conditional.replacements(),  # conditional writes are atomic
                cfn_events.replacements(),
                cfn_intrinsics.replacements(),
                cfn_change_sets.replacements(),
                cfn_stack_deletion.replacements(),
                cfn_custom_resources.replacements(),
                cfn_resource_types.replacements(),
                sagemaker_job_kinds.replacements(),
                sagemaker_processing.replacements(),  # processing jobs run (data preparation)
                sagemaker_job_requests.replacements(),  # after the kinds': it refuses before a job is made
            ):
                patcher.replace_all(replacements)
        except BaseException:
            patcher.undo()
            runner.close()
            raise
        _INSTALLED = _Installation(settings, patcher, runner)
        LOG.debug("moto patches installed for %s", settings.endpoint)


def uninstall() -> None:
    """Kill running functions and put moto back as it was (idempotent)."""
    global _INSTALLED
    with _LOCK:
        if _INSTALLED is None:
            return
        installation, _INSTALLED = _INSTALLED, None
    installation.runner.close()
    installation.patcher.undo()
    sagemaker_job_progress.TRACKER.reset()
    sagemaker_job_progress.TRACKER.configure(SageMakerSettings())


def installed() -> PatchSettings | None:
    """The settings in force, or None when the patches are not installed."""
    installation = _INSTALLED
    return installation.settings if installation else None


def lambda_runner() -> LambdaRunner:
    """The runner of the installed patches (raises when not installed)."""
    installation = _INSTALLED
    if installation is None:
        raise RuntimeError("the moto patches are not installed")
    return installation.runner


def _new_runner(settings: PatchSettings) -> LambdaRunner:
    return LambdaRunner(
        endpoint=settings.endpoint, cache_dir=settings.lambda_cache_dir, on_log=moto_lambda.log_invocation
    )


def _configure_moto(p: _Patcher, settings: PatchSettings) -> None:
    """Moto's switches: Lambda without Docker, Step Functions that execute, and its own port.

    moto's Step Functions interpreter calls back into the server at ``localhost:$MOTO_PORT`` (Lambda
    tasks, aws-sdk integrations), so ``MOTO_PORT`` must be the emulator's port.
    """
    from moto.core.config import default_user_config

    config: Any = default_user_config
    p.set_item(config, "lambda", {**config.get("lambda", {}), "use_docker": False})
    p.set_item(config, "stepfunctions", {**config.get("stepfunctions", {}), "execute_state_machine": True})
    p.set_item(os.environ, "MOTO_PORT", str(settings.port))
