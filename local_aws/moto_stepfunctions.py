"""Step Functions in the local AWS: state machines deployed by CloudFormation execute, like the pipeline's.

Three moto 5.2.5 limitations stop the pipeline's state machine from running:

- CloudFormation creates state machines in moto's plain backend, which never executes them (only the
  API's parser backend does, once ``execute_state_machine`` is on): CloudFormation is pointed at
  the parser backends.
- StartExecution without a name uses the name ``None``, so the second one is a duplicate; the
  service names it with a UUID, and so does this.
- datetimes in a service task's result (e.g. ``aws-sdk:s3:headObject``'s LastModified) stay in the
  execution's state and break DescribeExecution (HTTP 500, "Object of type datetime is not JSON
  serializable"); the service hands such results over as JSON, timestamps as ISO 8601 strings, and
  so does this.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Callable
from typing import Any


def _iso_datetimes(value: Any) -> Any:
    """``value`` with every datetime turned into an ISO 8601 string (UTC, milliseconds, ``Z``)."""
    if isinstance(value, dict):
        return {key: _iso_datetimes(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_iso_datetimes(item) for item in value]
    if isinstance(value, datetime.datetime):
        moment = value.astimezone(datetime.UTC) if value.tzinfo else value
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    if isinstance(value, datetime.date):
        return value.isoformat()
    return value


def _start_execution(original: Callable[..., Any]) -> Callable[..., Any]:
    def start_execution(
        self: Any,
        state_machine_arn: str,
        name: str | None = None,
        execution_input: Any = None,
        trace_header: Any = None,
    ) -> Any:
        return original(self, state_machine_arn, name or str(uuid.uuid4()), execution_input, trace_header)

    return start_execution


def _normalise_response(original: Callable[..., Any]) -> Callable[..., Any]:
    def normalise_response(self: Any, response: Any, *args: Any, **kwargs: Any) -> None:
        original(self, response, *args, **kwargs)
        if isinstance(response, dict):
            normalised = _iso_datetimes(response)
            response.clear()
            response.update(normalised)

    return normalise_response


def replacements() -> list[tuple[object, str, Callable[[Any], Any]]]:
    """(owner, attribute, make(original) -> replacement) for the Step Functions patches."""
    import moto.stepfunctions.models as sfn_models
    import moto.stepfunctions.responses  # noqa: F401  (binds the plain backends before the swap below)
    from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.state_task_service import (
        StateTaskService,
    )
    from moto.stepfunctions.parser.models import StepFunctionsParserBackend, stepfunctions_parser_backends

    # CloudFormation looks ``stepfunctions_backends`` up in moto.stepfunctions.models at call time. The
    # API module imports it by name: imported after the swap it would keep the parser backends for
    # good, and plain moto (mock_aws) in the same process would look for CloudFormation's state
    # machines in the wrong backend once the patches are undone.
    return [
        (sfn_models, "stepfunctions_backends", lambda _original: stepfunctions_parser_backends),
        (StepFunctionsParserBackend, "start_execution", _start_execution),
        (StateTaskService, "_normalise_response", _normalise_response),
    ]
