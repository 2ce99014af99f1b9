"""CloudFormation in the local AWS: per-resource stack events, as the CDK CLI shows them.

moto 5.2.5 records stack events only, none per resource: ``cdk deploy`` then shows nothing of what
happened to each resource, and a failed deployment gives no clue which resource failed. Creating and
updating a resource now adds ``<verb>_COMPLETE`` or ``<verb>_FAILED`` (with the reason) as the
service does, and a resource of a type moto does not emulate (it skips it) gets a CREATE_COMPLETE
event saying so, once: the stack deploys, and the skip is visible instead of silent. moto's own
"not supported" warning, repeated at every reference to such a resource, is dropped.

Still skipped (no moto model; nothing in the project's templates reads them): AWS::S3::BucketPolicy,
AWS::SNS::TopicPolicy, AWS::CDK::Metadata. IAM is not enforced anyway.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

LOG = logging.getLogger(__name__)


def _stack_of(resources_map: Any) -> Any | None:
    """The Stack a ResourceMap belongs to (None while the stack is being constructed)."""
    from moto.cloudformation.models import cloudformation_backends

    backend = cloudformation_backends[resources_map._account_id][resources_map._region_name]
    return backend.stacks.get(resources_map.stack_id)


def _resource_event(stack: Any, logical_id: str, resource_type: str, status: str, reason: str | None = None) -> None:
    """Append one resource event to ``stack`` (what DescribeStackEvents and the CDK CLI show)."""
    from moto.cloudformation.models import Event

    if stack is None:
        return
    stack.events.append(
        Event(
            stack_id=stack.stack_id,
            stack_name=stack.name,
            logical_resource_id=logical_id,
            physical_resource_id="",
            resource_type=resource_type,
            resource_status=status,
            resource_status_reason=reason,
            resource_properties=None,
        )
    )


def _parse_and_event(verb: str, original: Callable[..., Any]) -> Callable[..., Any]:
    """Per-resource ``<verb>_COMPLETE`` / ``<verb>_FAILED`` events (moto: none) around moto's parse_and_<verb>_resource.

    CREATE also notes the types moto skips; UPDATE keeps the existing resource where moto returns None.
    """

    def parse_and_event(
        logical_id: str, resource_json: dict[str, Any], resources_map: Any, account_id: str, region_name: str
    ) -> Any:
        resource_type = str(resource_json.get("Type"))
        stack = _stack_of(resources_map)
        try:
            resource = original(logical_id, resource_json, resources_map, account_id, region_name)
        except Exception as error:
            _resource_event(stack, logical_id, resource_type, f"{verb}_FAILED", error_reason(error))
            if verb == "CREATE":
                error.add_note(f"resource {logical_id} ({resource_type})")
            raise
        if verb == "CREATE" and resource is None:
            _note_skipped(stack, logical_id, resource_type, resources_map)
            return None
        if resource is None:
            # moto would store None over the existing resource (types without update support): keep it
            resource = resources_map._parsed_resources.get(logical_id)
        _resource_event(stack, logical_id, resource_type, f"{verb}_COMPLETE")
        return resource

    return parse_and_event


def _note_skipped(stack: Any, logical_id: str, resource_type: str, resources_map: Any) -> None:
    """A CREATE_COMPLETE event noting a resource of a type moto does not emulate (once per resource)."""
    from moto.cloudformation.parsing import resource_class_from_type

    if resource_class_from_type(resource_type) is not None:
        return
    noted: set[str] = resources_map.__dict__.setdefault("_panopipe_skipped", set())
    if logical_id not in noted:  # moto parses a skipped resource again at every reference
        noted.add(logical_id)
        reason = f"not emulated locally (moto has no {resource_type}): skipped"
        LOG.info("%s %s: %s", logical_id, resource_type, reason)
        _resource_event(stack, logical_id, resource_type, "CREATE_COMPLETE", reason)


def error_reason(error: BaseException) -> str:
    """The message of ``error`` (moto's errors keep it in ``message``)."""
    return str(getattr(error, "message", None) or str(error) or type(error).__name__)


class _QuietWarnings:
    """moto's parsing module's ``warnings``, minus "Tried to parse <type> but it's not supported".

    Each skipped resource is already a stack event and a log line; moto repeated the warning at
    every reference to it.
    """

    def __init__(self, module: Any) -> None:
        self._module = module

    def warn(self, message: Any, *args: Any, **kwargs: Any) -> None:
        """Drop the unsupported-type warning, pass the others on."""
        if "not supported by moto's CloudFormation implementation" in str(message):
            return
        self._module.warn(message, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._module, name)


def replacements() -> list[tuple[object, str, Callable[[Any], Any]]]:
    """(owner, attribute, make(original) -> replacement) for the resource events."""
    from moto.cloudformation import parsing

    return [
        (parsing, "warnings", _QuietWarnings),
        (parsing, "parse_and_create_resource", functools.partial(_parse_and_event, "CREATE")),
        (parsing, "parse_and_update_resource", functools.partial(_parse_and_event, "UPDATE")),
    ]
