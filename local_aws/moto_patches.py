"""The project's extensions of moto 5.2.5 (pinned) for the local mode: one :func:`install`, reversible.

moto in server mode is the local AWS; what it lacks for this project is patched here, one small
function per limitation (``_patch_*``), each saying which limitation it addresses:

====================================  ============================================================
moto 5.2.5 limitation                 patch
====================================  ============================================================
Lambda runs no code without Docker    :func:`_patch_lambda_python_runtime` — Python handlers run in
                                      a subprocess (``lambda_runner``), errors as Lambda formats them
public layers (Powertools) unknown    :func:`_patch_lambda_public_layers` — accepted; the venv has
                                      their packages
EventBridge rules cannot target       :func:`_patch_eventbridge_targets` — Lambda targets invoked
Lambda or Step Functions              asynchronously, state machines started
CFN-created state machines do not     :func:`_patch_stepfunctions_cloudformation` — CloudFormation
run; unnamed executions collide       uses the executing (parser) backend;
                                      :func:`_patch_stepfunctions_unnamed_executions`
datetimes in task results             :func:`_patch_stepfunctions_datetimes` — ISO 8601 strings
CloudFormation: change sets, Outputs, :func:`_patch_cloudformation` (``cloudformation.py``)
Fn::GetStackOutput, custom resources,
termination protection, delete order,
AWS::CloudWatch::Alarm, bucket
versioning and EventBridge settings
SageMaker jobs done at once, no       :func:`_patch_sagemaker_jobs` (``sagemaker_jobs.py``)
artifacts, no Stop*Job
====================================  ============================================================

:func:`install` is idempotent (a second call only applies new settings) and :func:`uninstall` puts
every original back, so tests that use moto's in-process mocks are not affected afterwards.
Patches change process-wide state (moto's classes and configuration, ``MOTO_PORT``): one emulator
per process.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import sys
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from local_aws import cloudformation, sagemaker_jobs
from local_aws.lambda_runner import FunctionSpec, InvocationResult, LambdaRunner
from local_aws.sagemaker_jobs import SageMakerSettings

LOG = logging.getLogger(__name__)
LAMBDA_LOG = logging.getLogger("local_aws.lambda")

_MISSING = object()


@dataclass(frozen=True)
class PatchSettings:
    """What the patches need: where the emulator listens, and how jobs and functions behave."""

    #: The emulator as clients reach it: ``http://localhost:PORT`` (not 127.0.0.1: moto then misreads
    #: the S3 template URLs the CDK CLI passes to CloudFormation).
    endpoint: str
    #: Where function code is extracted, once per code hash.
    lambda_cache_dir: Path = field(default_factory=lambda: default_lambda_cache_dir())
    #: The interpreter that runs functions (the venv's: it has boto3 and aws_lambda_powertools).
    lambda_python: str = sys.executable
    #: Extra environment for every function (e.g. ``AWS_ENDPOINT_URL_<SERVICE>`` overrides).
    lambda_extra_env: Mapping[str, str] = field(default_factory=dict)
    #: How SageMaker training and compilation jobs progress.
    sagemaker: SageMakerSettings = field(default_factory=SageMakerSettings)
    #: Seconds a custom resource may take to answer after its function returned.
    custom_resource_grace_seconds: float = 5.0

    @property
    def port(self) -> int:
        """The port of :attr:`endpoint`."""
        return int(self.endpoint.rsplit(":", 1)[1].split("/", 1)[0])


def default_lambda_cache_dir() -> Path:
    """Where function code is extracted by default (shared by emulators: entries are per code hash)."""
    return Path(tempfile.gettempdir()) / "panopipe-local" / "lambda"


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
    """Apply every patch (once); a later call only applies ``settings`` (a new endpoint, job timings…)."""
    global _INSTALLED
    with _LOCK:
        if _INSTALLED is not None:
            _reconfigure(_INSTALLED, settings)
            return
        patcher = _Patcher()
        runner = _new_runner(settings)
        try:
            _configure_moto(patcher, settings)
            _patch_lambda_python_runtime(patcher)
            _patch_lambda_public_layers(patcher)
            _patch_eventbridge_targets(patcher)
            _patch_stepfunctions_cloudformation(patcher)
            _patch_stepfunctions_unnamed_executions(patcher)
            _patch_stepfunctions_datetimes(patcher)
            _patch_cloudformation(patcher, settings)
            _patch_sagemaker_jobs(patcher, settings)
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
    sagemaker_jobs.TRACKER.reset()
    sagemaker_jobs.TRACKER.configure(SageMakerSettings())
    cloudformation.configure(cloudformation.CloudFormationSettings())


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
        endpoint=settings.endpoint,
        cache_dir=settings.lambda_cache_dir,
        python=settings.lambda_python,
        extra_env=settings.lambda_extra_env,
        on_log=_log_invocation,
    )


def _reconfigure(installation: _Installation, settings: PatchSettings) -> None:
    old = installation.settings
    installation.settings = settings
    if (old.endpoint, old.lambda_cache_dir, old.lambda_python, dict(old.lambda_extra_env)) != (
        settings.endpoint,
        settings.lambda_cache_dir,
        settings.lambda_python,
        dict(settings.lambda_extra_env),
    ):
        installation.runner.close()
        installation.runner = _new_runner(settings)
    os.environ["MOTO_PORT"] = str(settings.port)
    sagemaker_jobs.TRACKER.configure(settings.sagemaker)
    cloudformation.configure(_cloudformation_settings(settings))


# --------------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------
# Lambda
# --------------------------------------------------------------------------------------------------


def _runs_here(function: Any) -> bool:
    """Whether ``function`` is one the runner can run: a Python runtime with a zip."""
    return (
        str(getattr(function, "run_time", "") or "").startswith("python")
        and getattr(function, "package_type", "Zip") == "Zip"
        and bool(getattr(function, "code_bytes", b""))
    )


def _function_spec(function: Any) -> FunctionSpec:
    return FunctionSpec(
        name=function.function_name,
        arn=function.function_arn,
        handler=str(function.handler),
        code_zip=function.code_bytes,
        environment={str(k): str(v) for k, v in (function.environment_vars or {}).items()},
        timeout_seconds=float(function.timeout or 3),
        memory_mb=int(function.memory_size or 128),
        region=function.region,
        version=str(function.version),
        runtime=str(function.run_time),
        log_group=function.logs_group_name,
    )


def _header(headers: Any, name: str) -> str | None:
    """A request header, case-insensitively (moto passes werkzeug headers or plain dicts)."""
    if not headers:
        return None
    for key, value in headers.items():
        if str(key).lower() == name:
            return str(value)
    return None


def _save_logs(function: Any, result: InvocationResult) -> None:
    """Write the invocation's log to CloudWatch Logs, where the real service writes it."""
    try:
        function.logs_backend.ensure_log_group(function.logs_group_name)
        function.save_logs(result.log)
    except Exception:  # logs are a convenience: never fail an invocation for them
        LOG.debug("could not store the log of %s", function.function_name, exc_info=True)


def _log_invocation(function: FunctionSpec, result: InvocationResult) -> None:
    if result.function_error is None:
        LAMBDA_LOG.info("%s %s: ok", function.name, result.request_id)
    else:
        LAMBDA_LOG.warning("%s %s: %s", function.name, result.request_id, result.error_type)
    LAMBDA_LOG.debug("%s", result.log)


def _patch_lambda_python_runtime(p: _Patcher) -> None:
    """moto: without Docker, Invoke runs no code (it echoes the event). Run Python handlers for real.

    Every path that runs a function goes through ``LambdaFunction.invoke`` (the Invoke API, the
    legacy InvokeAsync, custom resources, SNS/SQS/S3 event sources), which the simple backend
    bypassed: both are replaced. RequestResponse waits for the handler; Event runs it in the
    background and answers 202 at once; DryRun runs nothing. Other runtimes keep moto's behaviour.
    """
    from moto.awslambda.models import LambdaBackend, LambdaFunction
    from moto.awslambda_simple.models import LambdaSimpleBackend

    def make_invoke(original: Callable[..., Any]) -> Callable[..., Any]:
        def invoke(self: Any, body: Any, request_headers: Any, response_headers: Any) -> Any:
            if not _runs_here(self):
                return original(self, body, request_headers, response_headers)
            runner = lambda_runner()
            spec = _function_spec(self)
            invocation_type = _header(request_headers, "x-amz-invocation-type") or "RequestResponse"
            if invocation_type == "DryRun":
                return b""
            if invocation_type == "Event":
                runner.invoke_in_background(spec, body, on_done=lambda result: _save_logs(self, result))
                return b""
            result = runner.invoke(spec, body)
            _save_logs(self, result)
            if result.function_error:
                response_headers["x-amz-function-error"] = result.function_error
            response_headers["x-amz-log-result"] = result.log_tail()
            response_headers["x-amz-executed-version"] = spec.version
            return result.payload

        return invoke

    def make_simple_invoke(original: Callable[..., Any]) -> Callable[..., Any]:
        def invoke(
            self: Any, function_name: str, qualifier: str | None, body: Any, headers: Any, response_headers: Any
        ) -> Any:
            function = self.get_function(function_name, qualifier)
            if _runs_here(function):
                return LambdaBackend.invoke(self, function_name, qualifier, body, headers, response_headers)
            return original(self, function_name, qualifier, body, headers, response_headers)

        return invoke

    p.replace(LambdaFunction, "invoke", make_invoke)
    p.replace(LambdaSimpleBackend, "invoke", make_simple_invoke)


def _patch_lambda_public_layers(p: _Patcher) -> None:
    """moto: a layer ARN it does not hold fails the function (UnknownLayerVersionException).

    Layers published by another account (AWS's public Powertools layer, which the stacks attach)
    are accepted and listed; their packages come from the interpreter that runs the functions. A
    layer of the function's own account must still exist.
    """
    from moto.awslambda.exceptions import UnknownLayerVersionException
    from moto.awslambda.models import LambdaFunction
    from moto.awslambda.utils import get_backend

    def make(_original: Callable[..., Any]) -> Callable[..., Any]:
        def get_layers_data(self: Any, layers_versions_arns: list[str]) -> list[dict[str, Any]]:
            backend = get_backend(self.account_id, self.region)
            layers: list[dict[str, Any]] = []
            for arn in layers_versions_arns:
                version = backend.layers_versions_by_arn(arn)
                if version is not None:
                    layers.append({"Arn": version.arn, "CodeSize": version.code_size})
                elif arn.count(":") >= 4 and arn.split(":")[4] != self.account_id:
                    layers.append({"Arn": arn, "CodeSize": 0})
                else:
                    raise UnknownLayerVersionException([arn])
            return layers

        return get_layers_data

    p.replace(LambdaFunction, "_get_layers_data", make)


def target_input(target: Mapping[str, Any], event: dict[str, Any]) -> Any:
    """What an EventBridge target receives.

    Its constant Input, the InputPath's part of the event, the InputTransformer's result, or the event.
    """
    from moto.events.utils import EventTemplateParser

    if target.get("Input"):
        return json.loads(str(target["Input"]))
    if target.get("InputPath"):
        value: Any = event
        for part in str(target["InputPath"]).removeprefix("$").strip(".").split("."):
            if part:
                value = value.get(part) if isinstance(value, dict) else None
        return value
    transformer = target.get("InputTransformer")
    if transformer:
        return EventTemplateParser.parse(
            input_template=transformer.get("InputTemplate"),
            input_paths_map=transformer.get("InputPathsMap", {}),
            event=event,  # type: ignore[arg-type]
        )
    return event


def _patch_eventbridge_targets(p: _Patcher) -> None:
    """moto: a rule whose target is a Lambda function or a state machine raises NotImplementedError.

    (S3's EventBridge notifications swallow it, so the rule silently never fired.) Matching events
    now invoke the function asynchronously (InvocationType Event, as EventBridge does) or start an
    execution with the event as input; moto still delivers to its own targets (SQS, logs, buses).
    Scheduled rules do not fire: the emulator has no scheduler.
    """
    import copy

    from moto.awslambda.utils import get_backend as lambda_backend
    from moto.events.models import Rule
    from moto.stepfunctions.parser.models import stepfunctions_parser_backends
    from moto.utilities.arns import parse_arn

    def make(original: Callable[..., Any]) -> Callable[..., Any]:
        def send_to_targets(self: Any, original_event: Any, transform_input: bool = True) -> None:
            if not self.event_pattern.matches_event(original_event):
                return
            ours = [t for t in self.targets if parse_arn(t["Arn"]).service in ("lambda", "states")]
            for target in ours:
                arn = parse_arn(target["Arn"])
                payload = json.dumps(target_input(target, original_event) if transform_input else original_event)
                try:
                    if arn.service == "lambda":
                        function = lambda_backend(arn.account, arn.region).get_function(target["Arn"])
                        function.invoke(payload, {"x-amz-invocation-type": "Event"}, {})
                    else:
                        backend = stepfunctions_parser_backends[arn.account][arn.region]
                        backend.start_execution(target["Arn"], str(uuid.uuid4()), payload)
                except Exception:  # EventBridge delivers asynchronously: a failed target fails nobody
                    LOG.exception("rule %s: delivery to %s failed", self.name, target["Arn"])
            others = [t for t in self.targets if t not in ours]
            if others:
                rest = copy.copy(self)
                rest.targets = others
                original(rest, original_event, transform_input)

        return send_to_targets

    p.replace(Rule, "send_to_targets", make)


# --------------------------------------------------------------------------------------------------
# Step Functions
# --------------------------------------------------------------------------------------------------


def _patch_stepfunctions_cloudformation(p: _Patcher) -> None:
    """moto: CloudFormation creates state machines in the plain backend, which never executes them.

    The API uses the executing (parser) backend once ``execute_state_machine`` is on; CloudFormation
    looks its backend up in ``moto.stepfunctions.models`` at call time, so pointing that name at the
    parser backends makes state machines deployed by the CDK CLI executable.
    """
    import moto.stepfunctions.models as sfn_models
    import moto.stepfunctions.responses  # noqa: F401  (binds the plain backends before the swap below)
    from moto.stepfunctions.parser.models import stepfunctions_parser_backends

    # The API module imports ``stepfunctions_backends`` by name: imported after the swap it would keep
    # the parser backends for good, and plain moto (mock_aws) in the same process would look for
    # CloudFormation's state machines in the wrong backend once the patches are undone.
    p.replace(sfn_models, "stepfunctions_backends", lambda _original: stepfunctions_parser_backends)


def _patch_stepfunctions_unnamed_executions(p: _Patcher) -> None:
    """moto: StartExecution without a name uses the name ``None``, so the second one is a duplicate.

    The service names it with a UUID; so does this.
    """
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend

    def make(original: Callable[..., Any]) -> Callable[..., Any]:
        def start_execution(
            self: Any,
            state_machine_arn: str,
            name: str | None = None,
            execution_input: Any = None,
            trace_header: Any = None,
        ) -> Any:
            return original(self, state_machine_arn, name or str(uuid.uuid4()), execution_input, trace_header)

        return start_execution

    p.replace(StepFunctionsParserBackend, "start_execution", make)


def iso_datetimes(value: Any) -> Any:
    """``value`` with every datetime turned into an ISO 8601 string (UTC, milliseconds, ``Z``)."""
    if isinstance(value, dict):
        return {key: iso_datetimes(item) for key, item in value.items()}
    if isinstance(value, list):
        return [iso_datetimes(item) for item in value]
    if isinstance(value, datetime.datetime):
        moment = value.astimezone(datetime.UTC) if value.tzinfo else value
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    if isinstance(value, datetime.date):
        return value.isoformat()
    return value


def _patch_stepfunctions_datetimes(p: _Patcher) -> None:
    """moto: datetimes in a service task's result break DescribeExecution (HTTP 500).

    Any aws-sdk integration returning a timestamp (e.g. ``aws-sdk:s3:headObject``'s LastModified)
    leaves datetimes in the execution's state, and DescribeExecution then fails with "Object of
    type datetime is not JSON serializable".

    The service hands such results over as JSON, timestamps as ISO 8601 strings: every service
    task's result is normalised that way before the state processes it.
    """
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service import (
        StateTaskService,
    )

    def make(original: Callable[..., Any]) -> Callable[..., Any]:
        def normalise_response(self: Any, response: Any, *args: Any, **kwargs: Any) -> None:
            original(self, response, *args, **kwargs)
            if isinstance(response, dict):
                normalised = iso_datetimes(response)
                response.clear()
                response.update(normalised)

        return normalise_response

    p.replace(StateTaskService, "_normalise_response", make)


# --------------------------------------------------------------------------------------------------
# CloudFormation and SageMaker (their own modules)
# --------------------------------------------------------------------------------------------------


def _cloudformation_settings(settings: PatchSettings) -> cloudformation.CloudFormationSettings:
    return cloudformation.CloudFormationSettings(
        endpoint=settings.endpoint, response_grace_seconds=settings.custom_resource_grace_seconds
    )


def _apply(p: _Patcher, replacements: Iterable[tuple[object, str, Callable[[Any], Any]]]) -> None:
    for owner, name, make in replacements:
        p.replace(owner, name, make)


def _patch_cloudformation(p: _Patcher, settings: PatchSettings) -> None:
    """moto: CloudFormation falls short of what the CDK CLI and the project's templates need.

    Change-set deploys lose Outputs and fail on update, no Fn::GetStackOutput, custom resources
    unreachable and never updated or deleted, no UpdateTerminationProtection, no
    AWS::CloudWatch::Alarm — see ``cloudformation.py`` for each replacement.
    """
    cloudformation.configure(_cloudformation_settings(settings))
    _apply(p, cloudformation.replacements())


def _patch_sagemaker_jobs(p: _Patcher, settings: PatchSettings) -> None:
    """moto: SageMaker jobs are Completed at creation, write no artifact, and cannot be stopped.

    See ``sagemaker_jobs.py``.
    """
    sagemaker_jobs.TRACKER.configure(settings.sagemaker)
    _apply(p, sagemaker_jobs.replacements())
