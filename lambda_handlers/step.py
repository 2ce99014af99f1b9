"""The one wrapper every step handler goes through: logging and error translation.

A step is a function from the run's state (a dict) to its new state. The wrapper turns AWS
throttling and server errors into :class:`Throttled` / :class:`TransientError`, which the state
machine retries with backoff; typed :class:`PipelineError` subclasses pass through unchanged.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from aws_lambda_powertools import Logger
from botocore.exceptions import ClientError, ConnectionError, ReadTimeoutError

from lambda_handlers.errors import Throttled, TransientError

logger = Logger(service="panorama-pipeline")

THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "SlowDown",
        "ProvisionedThroughputExceededException",
    }
)
TRANSIENT_CODES = frozenset({"InternalServerException", "InternalFailure", "ServiceUnavailable", "InternalError"})

State = dict[str, Any]


class Handler(Protocol):
    """A Lambda handler of a step: the Lambda context is optional (tests and local runs omit it)."""

    def __call__(self, event: State, context: Any = None) -> State: ...  # noqa: D102


def translate(error: ClientError) -> Exception:
    """The retryable typed error for a throttling/5xx ClientError, else the error itself."""
    code = str(error.response.get("Error", {}).get("Code", ""))
    status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
    operation = getattr(error, "operation_name", "?")
    if code in THROTTLING_CODES or status == 429:
        return Throttled(f"{operation} throttled: {code}")
    if code in TRANSIENT_CODES or status >= 500:
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


def step(function: Callable[[State], State]) -> Handler:
    """Make a Lambda handler of a state-to-state step function."""

    @functools.wraps(function)
    def handler(event: State, context: Any = None) -> State:
        logger.append_keys(step=function.__name__, run=event.get("run", {}).get("name"))
        with retryable_errors():
            result = function(event)
        logger.info("step done", extra={"keys": sorted(result)})
        return result

    return handler
