"""CloudFormation in the local AWS: termination protection, and deleting a stack the way the service does.

``cdk deploy`` turns termination protection on for protected stacks and ``cdk destroy`` must then
be refused; moto 5.2.5 does not implement UpdateTerminationProtection and ignored the protection.
moto also deleted a stack's resources in set order, retrying failures, so a custom resource could
outlive the function that must answer its Delete request, and a failing resource made the stack
vanish with an HTTP 500. Here a protected stack cannot be deleted, resources are deleted dependents
first (what ``Ref``, ``Fn::GetAtt``, ``Fn::Sub`` and ``DependsOn`` say; ``DeletionPolicy: Retain``
keeps a resource), and a failure leaves the stack DELETE_FAILED with the reason.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from local_aws.cfn_events import error_reason

LOG = logging.getLogger(__name__)


def _update_termination_protection_response(self: Any) -> Any:
    """UpdateTerminationProtection (moto: not implemented; the CDK CLI calls it for protected stacks)."""
    from moto.core.responses import ActionResult

    stack = self.cloudformation_backend.get_stack(self._get_param("StackName"))
    stack.enable_termination_protection = self._get_bool_param("EnableTerminationProtection", False)
    return ActionResult({"StackId": stack.stack_id})


def _delete_stack(original: Callable[[Any, str], None]) -> Callable[[Any, str], None]:
    """DeleteStack: refused while termination protection is on; a failure is DELETE_FAILED.

    (moto ignored the protection, and a failing resource made the stack vanish with an HTTP 500.)
    """

    def delete_stack(self: Any, name_or_stack_id: str) -> None:
        from moto.cloudformation.exceptions import ValidationError

        stack = next((s for s in self.stacks.values() if name_or_stack_id in (s.name, s.stack_id)), None)
        if stack is None:
            return  # deleting a stack that does not exist succeeds
        if stack.enable_termination_protection:
            raise ValidationError(
                message=f"Stack [{stack.name}] cannot be deleted while TerminationProtection is enabled"
            )
        try:
            original(self, stack.stack_id)
        except Exception as error:
            LOG.warning("stack %s: delete failed: %s", stack.name, error_reason(error))
            self.deleted_stacks.pop(stack.stack_id, None)
            self.stacks[stack.stack_id] = stack
            stack.status = "DELETE_FAILED"
            stack.status_reason = error_reason(error)
            stack._add_stack_event("DELETE_FAILED", resource_status_reason=error_reason(error))

    return delete_stack


def _references(value: Any, names: set[str]) -> set[str]:
    """The logical ids among ``names`` that ``value`` (a resource's JSON) depends on.

    Dependencies are what the service follows too: ``Ref``, ``Fn::GetAtt``, ``${...}`` in
    ``Fn::Sub`` and ``DependsOn``.
    """
    found: set[str] = set()
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "Ref" and isinstance(item, str) and item in names:
                found.add(item)
            elif key == "Fn::GetAtt":
                target = item[0] if isinstance(item, list) and item else str(item).split(".", 1)[0]
                if target in names:
                    found.add(target)
            elif key == "Fn::Sub":
                text = item[0] if isinstance(item, list) and item else item
                if isinstance(text, str):
                    for match in re.findall(r"\$\{([^}!][^}]*)\}", text):
                        if match.split(".", 1)[0] in names:
                            found.add(match.split(".", 1)[0])
            elif key == "DependsOn":
                found.update(name for name in ([item] if isinstance(item, str) else item or []) if name in names)
            found |= _references(item, names)
    elif isinstance(value, list):
        for item in value:
            found |= _references(item, names)
    return found


def _delete_resources(self: Any) -> None:
    """Delete a stack's resources dependents first, as the service does.

    (moto deleted them in set order, retrying failures, so a custom resource could outlive the
    function that must answer its Delete request.) Resources with ``DeletionPolicy: Retain`` stay.
    """
    templates: dict[str, Any] = self._resource_json_map
    names = set(templates)
    depends = {name: _references(body, names) - {name} for name, body in templates.items()}
    remaining = {name for name, body in templates.items() if body.get("DeletionPolicy") != "Retain"}
    while remaining:
        ready = [name for name in remaining if not any(name in depends[other] for other in remaining)]
        if not ready:  # a cycle: moto's order
            ready = sorted(remaining)
        failure: Exception | None = None
        for name in sorted(ready):
            parsed = self._parsed_resources.get(name)
            try:
                if parsed is not None and not isinstance(parsed, str):
                    self._delete_resource(parsed, templates[name])
                    self._parsed_resources.pop(name, None)
            except Exception as error:
                failure = error
                continue
            remaining.discard(name)
        if failure is not None and not remaining.isdisjoint(ready):
            raise failure


def replacements() -> list[tuple[object, str, Callable[[Any], Any]]]:
    """(owner, attribute, make(original) -> replacement) for termination protection and deletion."""
    from moto.cloudformation.models import CloudFormationBackend
    from moto.cloudformation.parsing import ResourceMap
    from moto.cloudformation.responses import CloudFormationResponse

    return [
        (CloudFormationBackend, "delete_stack", _delete_stack),
        (ResourceMap, "delete", lambda _original: _delete_resources),
        (
            CloudFormationResponse,
            "update_termination_protection",
            lambda _original: _update_termination_protection_response,
        ),
    ]
