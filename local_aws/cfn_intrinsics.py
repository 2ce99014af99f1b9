"""CloudFormation in the local AWS: ``Fn::GetStackOutput``, CDK's weak cross-stack references.

The CDK writes a reference from one stack to another's value as ``Fn::GetStackOutput`` (no export, so
the producing stack stays free to change). moto 5.2.5 does not know the function and passed the dict
through unresolved, so the consuming stack received a JSON object instead of, e.g., a bucket name.
Here it resolves to the named Output of the named live stack, in the given Region (default: this
stack's) and account (the RoleArn's, if given), and a missing stack or output fails the template as
the service does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def _get_stack_output(spec: Any, resources_map: Any) -> Any:
    """Resolve ``{"Fn::GetStackOutput": {"StackName", "OutputName", "Region"?, "RoleArn"?}}``.

    The value is the named Output of the named (live) stack, in the given region (default: this
    stack's) and account (the RoleArn's, if given; default: this stack's).
    """
    from moto.cloudformation.exceptions import ValidationError
    from moto.cloudformation.models import cloudformation_backends

    if not isinstance(spec, dict) or "StackName" not in spec or "OutputName" not in spec:
        raise ValidationError(message=f"Template error: Fn::GetStackOutput needs StackName and OutputName: {spec!r}")
    region = str(spec.get("Region") or resources_map._region_name)
    account = resources_map._account_id
    role_arn = spec.get("RoleArn")
    if isinstance(role_arn, str) and role_arn.count(":") >= 5:
        account = role_arn.split(":")[4] or account
    backend = cloudformation_backends[account][region]
    stack_name, output_name = str(spec["StackName"]), str(spec["OutputName"])
    stack = next(
        (s for s in backend.stacks.values() if stack_name in (s.name, s.stack_id) and s.status != "DELETE_COMPLETE"),
        None,
    )
    if stack is None:
        raise ValidationError(message=f"Template error: Fn::GetStackOutput: stack {stack_name} does not exist")
    output = stack.output_map.get(output_name) if output_name in stack.output_map.outputs else None
    if output is None:
        raise ValidationError(
            message=f"Template error: Fn::GetStackOutput: stack {stack_name} has no output {output_name}"
        )
    return output.value


def _clean_json(original: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """Intrinsics: add Fn::GetStackOutput (moto: unknown, the dict was passed through unresolved)."""

    def clean_json(resource_json: Any, resources_map: Any) -> Any:
        if isinstance(resource_json, dict) and "Fn::GetStackOutput" in resource_json:
            return _get_stack_output(clean_json(resource_json["Fn::GetStackOutput"], resources_map), resources_map)
        return original(resource_json, resources_map)

    return clean_json


def replacements() -> list[tuple[object, str, Callable[[Any], Any]]]:
    """(owner, attribute, make(original) -> replacement) for Fn::GetStackOutput."""
    from moto.cloudformation import parsing

    return [(parsing, "clean_json", _clean_json)]
