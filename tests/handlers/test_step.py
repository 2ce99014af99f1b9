"""The step wrapper: Powertools logging with the run as correlation id, lazy tracing, error translation."""

from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass
from typing import Any

import pytest
from botocore.exceptions import ClientError

from lambda_handlers import step as step_module
from lambda_handlers.errors import Throttled, TransientError
from lambda_handlers.state import RunState
from lambda_handlers.step import state_name, step


@dataclass
class Context:
    """What Lambda passes (the fields Powertools' Logger reads)."""

    function_name: str = "panopipe-dev-Evaluate"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:panopipe-dev-Evaluate"
    aws_request_id: str = "req-1"


@step
def check_thing(state: RunState) -> RunState:
    return {**state, "failed_step": "none"}


def _client_error(code: str, status: int) -> ClientError:
    return ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "DescribeThing")


def test_the_state_name_is_the_handlers_name_in_camel_case() -> None:
    assert state_name(check_thing) == "CheckThing"
    assert check_thing.__module__ == __name__ and check_thing.__name__ == "check_thing"


def test_an_invocation_logs_json_with_the_run_as_correlation_id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(step_module.logger.registered_formatter)
    underlying = step_module.logger._logger  # the stdlib logger Powertools writes through
    underlying.addHandler(handler)
    try:
        state: RunState = {"run": {"name": "ds-people-abc", "started": "t"}}
        assert check_thing(state, Context())["failed_step"] == "none"
    finally:
        underlying.removeHandler(handler)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    (done,) = [line for line in lines if line["message"] == "step done"]
    assert done["correlation_id"] == "ds-people-abc" and done["step"] == "CheckThing"
    assert done["function_name"] == "panopipe-dev-Evaluate" and done["function_request_id"] == "req-1"


def test_no_tracer_is_built_when_tracing_is_off_or_the_call_is_direct(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[Any] = []
    monkeypatch.setattr(step_module, "tracer", lambda: built.append(1))
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "1")
    check_thing({"run": {"name": "r", "started": "t"}}, Context())
    check_thing({"run": {"name": "r", "started": "t"}})
    assert built == [], "building a Tracer imports the X-Ray SDK: only a traced invocation may"


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [("ThrottlingException", 400, Throttled), ("SlowDown", 503, Throttled), ("InternalError", 500, TransientError)],
)
def test_throttling_and_server_errors_become_the_retried_types(code: str, status: int, expected: type) -> None:
    @step
    def failing(state: RunState) -> RunState:
        raise _client_error(code, status)

    with pytest.raises(expected):
        failing({"run": {"name": "r", "started": "t"}})


def test_other_client_errors_pass_through() -> None:
    @step
    def failing(state: RunState) -> RunState:
        raise _client_error("AccessDeniedException", 400)

    with pytest.raises(ClientError, match="AccessDeniedException"):
        failing({"run": {"name": "r", "started": "t"}})
