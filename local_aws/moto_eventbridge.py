"""EventBridge in the local AWS: rules deliver to Lambda functions and state machines (moto raises).

moto 5.2.5 raises NotImplementedError for a rule whose target is a Lambda function or a state
machine, and S3's EventBridge notifications swallow it: the pipeline's trigger rule (a ``_READY``
marker uploaded to the data bucket) silently never fired. Matching events now invoke the function
asynchronously (InvocationType Event, as EventBridge does) or start an execution, with the target's
Input, InputPath or InputTransformer applied; moto still delivers to its own targets (SQS, logs,
buses). Scheduled rules do not fire: the emulator has no scheduler.
"""

from __future__ import annotations

import copy
import json
import logging
import uuid
from collections.abc import Callable, Mapping
from typing import Any

LOG = logging.getLogger(__name__)


def _target_input(target: Mapping[str, Any], event: dict[str, Any]) -> Any:
    """What a target receives: its constant Input, the InputPath's part, the InputTransformer's result, or the event."""
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


def _send_to_targets(original: Callable[..., Any]) -> Callable[..., Any]:
    from moto.awslambda.utils import get_backend as lambda_backend
    from moto.stepfunctions.parser.models import stepfunctions_parser_backends
    from moto.utilities.arns import parse_arn

    def send_to_targets(self: Any, original_event: Any, transform_input: bool = True) -> None:
        if not self.event_pattern.matches_event(original_event):
            return
        ours = [t for t in self.targets if parse_arn(t["Arn"]).service in ("lambda", "states")]
        for target in ours:
            arn = parse_arn(target["Arn"])
            payload = json.dumps(_target_input(target, original_event) if transform_input else original_event)
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


def replacements() -> list[tuple[object, str, Callable[[Any], Any]]]:
    """(owner, attribute, make(original) -> replacement) for the EventBridge patch."""
    from moto.events.models import Rule

    return [(Rule, "send_to_targets", _send_to_targets)]
