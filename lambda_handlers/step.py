"""The one wrapper every step handler goes through: Powertools logging and tracing, error translation.

A step is a function from the run's state to its new state, decorated with :func:`step`; the
decorated function is the Lambda handler, named after the state it runs as (:func:`state_name`:
``check_deployment`` runs as ``CheckDeployment``), which is how the step specs in ``stacks/steps``
derive each state's name. The wrapper turns AWS throttling and server errors into
:class:`Throttled` / :class:`TransientError`, which the state machine retries with backoff; typed
:class:`PipelineError` subclasses pass through unchanged.

Logs are structured (Powertools ``Logger``; the service name comes from ``POWERTOOLS_SERVICE_NAME``)
with the run's name as correlation id; Powertools ``Tracer`` records each invocation (the functions
have active tracing). The tracer is built on the first invocation, not at import: building one
imports the X-Ray SDK (~0.12 s), which only a traced invocation needs, and not at all when
``POWERTOOLS_TRACE_DISABLED`` is set.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from aws_lambda_powertools import Logger, Tracer
from botocore.exceptions import ClientError, ConnectionError, ReadTimeoutError

from lambda_handlers.aws.client_errors import SERVER_SIDE, THROTTLING, error_code, http_status
from lambda_handlers.errors import Throttled, TransientError
from lambda_handlers.state import RunState

logger = Logger()

#: Where the run's name is in every step's event (the state machine's first state puts it there).
RUN_NAME_PATH = "run.name"


class Handler(Protocol):
    """A Lambda handler: the context is optional (tests and the run interpreter call handlers directly)."""

    __name__: str

    def __call__(self, event: Any, context: Any = None) -> Any: ...  # noqa: D102


def state_name(handler: Callable[..., Any]) -> str:
    """The state machine's name for a handler: its function name in CamelCase (``evaluate`` → ``Evaluate``)."""
    return "".join(part.capitalize() for part in handler.__name__.split("_"))


def translate(error: ClientError) -> Exception:
    """The retryable typed error for a throttling/5xx ClientError, else the error itself."""
    code, status = error_code(error), http_status(error)
    operation = getattr(error, "operation_name", "?")
    if code in THROTTLING or status == 429:
        return Throttled(f"{operation} throttled: {code}")
    if code in SERVER_SIDE or status >= 500:
        return TransientError(f"{operation} failed server-side: {code} (HTTP {status})")
    unchanged: Exception = error
    return unchanged


@contextlib.contextmanager
def retryable_errors() -> Iterator[None]:
    """Raise AWS throttling, 5xx and connection failures as the typed errors the retries match."""
    try:
        yield
    except ClientError as error:
        translated = translate(error)
        if translated is error:
            raise
        raise translated from error
    except (ConnectionError, ReadTimeoutError) as error:
        raise TransientError(f"{type(error).__name__}: {error}") from error


@functools.cache
def tracer() -> Tracer:
    """The process's tracer, built on first use; it traces the AWS calls (botocore) and nothing else."""
    return Tracer(patch_modules=("botocore",))


def _tracing_disabled() -> bool:
    return os.environ.get("POWERTOOLS_TRACE_DISABLED", "").strip().lower() in ("1", "true", "yes", "on")


def lambda_entry(correlation_id_path: str) -> Callable[[Callable[[Any], Any]], Handler]:
    """Make a Lambda handler of ``function(event)``: logged with its context, traced, errors translated."""

    def decorate(function: Callable[[Any], Any]) -> Handler:
        @functools.wraps(function)
        def run(event: Any, context: Any = None) -> Any:
            with retryable_errors():
                return function(event)

        logged = logger.inject_lambda_context(correlation_id_path=correlation_id_path)(run)

        @functools.cache
        def instrumented() -> Callable[[Any, Any], Any]:
            if _tracing_disabled():
                return logged
            return tracer().capture_lambda_handler(capture_response=False)(logged)  # type: ignore[no-any-return]

        @functools.wraps(function)
        def handler(event: Any, context: Any = None) -> Any:
            if context is None:  # a direct call: no Lambda context to log or trace
                return run(event)
            return instrumented()(event, context)

        return handler

    return decorate


def step(function: Callable[[RunState], RunState]) -> Handler:
    """Make a state machine step's Lambda handler of a state-to-state function."""
    name = state_name(function)

    def logged(state: RunState) -> RunState:
        logger.append_keys(step=name)
        result = function(state)
        logger.info("step done", extra={"sections": sorted(result)})
        return result

    functools.update_wrapper(logged, function)
    return lambda_entry(RUN_NAME_PATH)(logged)
