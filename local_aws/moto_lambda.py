"""Lambda in the local AWS: Python handlers run for real, in subprocesses (moto runs none without Docker).

moto 5.2.5 without Docker answers Invoke with the event it was given and runs no code, so nothing of
the pipeline would happen. Here ``LambdaFunction.invoke`` (every path that runs a function: the
Invoke API, InvokeAsync, custom resources, event sources) hands a Python function to the
:class:`~local_aws.lambda_runner.LambdaRunner`; RequestResponse waits for the handler, Event runs it
in the background and answers 202 at once, DryRun runs nothing; the log goes to CloudWatch Logs,
where Lambda writes it. Other runtimes keep moto's behaviour.

The stacks attach AWS's public Powertools layer; moto refuses a layer ARN it does not hold
(UnknownLayerVersionException), so layers of another account are accepted and listed (their
packages come from the venv that runs the functions). A layer of the function's own account must
still exist.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from local_aws.lambda_runner import FunctionSpec, InvocationResult, LambdaRunner

LOG = logging.getLogger(__name__)
_FUNCTION_LOG = logging.getLogger("local_aws.lambda")


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


def log_invocation(function: FunctionSpec, result: InvocationResult) -> None:
    """One line per invocation in the emulator's log (the function's own log at DEBUG)."""
    if result.function_error is None:
        _FUNCTION_LOG.info("%s %s: ok", function.name, result.request_id)
    else:
        _FUNCTION_LOG.warning("%s %s: %s", function.name, result.request_id, result.error_type)
    _FUNCTION_LOG.debug("%s", result.log)


def _python_runtime(runner: Callable[[], LambdaRunner]) -> list[tuple[object, str, Callable[[Any], Any]]]:
    """Invoke runs Python handlers with ``runner()``; the simple backend no longer bypasses ``invoke``."""
    from moto.awslambda.models import LambdaBackend, LambdaFunction
    from moto.awslambda_simple.models import LambdaSimpleBackend

    def make_invoke(original: Callable[..., Any]) -> Callable[..., Any]:
        def invoke(self: Any, body: Any, request_headers: Any, response_headers: Any) -> Any:
            if not _runs_here(self):
                return original(self, body, request_headers, response_headers)
            spec = _function_spec(self)
            invocation_type = _header(request_headers, "x-amz-invocation-type") or "RequestResponse"
            if invocation_type == "DryRun":
                return b""
            if invocation_type == "Event":
                runner().invoke_in_background(spec, body, on_done=lambda result: _save_logs(self, result))
                return b""
            result = runner().invoke(spec, body)
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

    return [(LambdaFunction, "invoke", make_invoke), (LambdaSimpleBackend, "invoke", make_simple_invoke)]


def _public_layers(_original: Callable[..., Any]) -> Callable[..., Any]:
    """``_get_layers_data`` that accepts layers of other accounts (AWS's public Powertools layer)."""
    from moto.awslambda.exceptions import UnknownLayerVersionException
    from moto.awslambda.utils import get_backend

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


def replacements(runner: Callable[[], LambdaRunner]) -> list[tuple[object, str, Callable[[Any], Any]]]:
    """(owner, attribute, make(original) -> replacement) for the Lambda patches; ``runner()``: the runner in force."""
    from moto.awslambda.models import LambdaFunction

    return [*_python_runtime(runner), (LambdaFunction, "_get_layers_data", _public_layers)]
