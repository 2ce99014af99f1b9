"""CloudFormation in the local AWS: change sets, which are how the CDK CLI deploys every stack.

moto 5.2.5's change sets fall short of a ``cdk deploy``: executing a CREATE change set kept the
template at ``{}`` (so the stack had no Outputs and no exports), a failing resource answered HTTP 500
and left the stack in limbo, change sets were looked up by name across every stack (and every CDK
stack uses the same change-set name), a missing one was a ValidationError or an UnboundLocalError,
``UsePreviousValue`` on an SSM-typed parameter (CDK's ``BootstrapVersion``) crashed, a CREATE change
set for a stack left in REVIEW_IN_PROGRESS made a second stack with the same name, and a change set
without changes was refused like UpdateStack's "No updates are to be performed".

Here executing a change set keeps the template, parameters, Outputs and exports; a failure ends in
ROLLBACK_COMPLETE / UPDATE_ROLLBACK_COMPLETE with the reason (what the CDK CLI reports); change sets
are looked up per stack, a missing one is ``ChangeSetNotFound``; an unchanged change set is FAILED,
as the service answers. CreateStack's failures end in ROLLBACK_COMPLETE too.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from local_aws.cfn_events import error_reason

LOG = logging.getLogger(__name__)

#: Stack statuses in which an operation ended badly (the CDK CLI reports these as failures).
_ROLLBACK_STATUS = {
    "CREATE": "ROLLBACK_COMPLETE",
    "UPDATE": "UPDATE_ROLLBACK_COMPLETE",
    "IMPORT": "IMPORT_ROLLBACK_COMPLETE",
}


@functools.cache
def _error_classes() -> tuple[type[Exception], type[Exception]]:
    """(ChangeSetNotFoundException, InvalidChangeSetStatusException) on moto's error base.

    Built on first use: importing moto's CloudFormation loads most of moto, which a client of the
    emulator (``read_state``, ``terminate``) does not need.
    """
    from moto.cloudformation.exceptions import CloudFormationError

    class ChangeSetNotFoundException(CloudFormationError):
        code = "ChangeSetNotFoundException"  # serialized as ChangeSetNotFound, HTTP 404 (the service model)

    class InvalidChangeSetStatusException(CloudFormationError):
        code = "InvalidChangeSetStatusException"

    return ChangeSetNotFoundException, InvalidChangeSetStatusException


def _not_found(name: str) -> Exception:
    return _error_classes()[0](f"ChangeSet [{name}] does not exist")


def _invalid_status(message: str) -> Exception:
    return _error_classes()[1](message)


def _find_change_set(backend: Any, change_set_name: str, stack_name: str | None) -> Any:
    """The change set by ARN, or by name within ``stack_name`` (moto: by name across every stack)."""
    if change_set_name in backend.change_sets:
        return backend.change_sets[change_set_name]
    matches = [
        cs
        for cs in backend.change_sets.values()
        if cs.change_set_name == change_set_name and (not stack_name or stack_name in (cs.stack_name, cs.stack_id))
    ]
    if not matches:
        raise _not_found(change_set_name)
    return matches[-1]


def _create_change_set(original: Callable[..., Any]) -> Callable[..., Any]:
    """CreateChangeSet: SSM parameters under UsePreviousValue, and re-creating a REVIEW_IN_PROGRESS stack.

    moto resolves ``UsePreviousValue`` to the previous *resolved* value, which for an SSM-typed
    parameter (CDK's BootstrapVersion) it then looks up as a parameter name and crashes. The real
    service keeps the parameter's name and reads the current value: so here a value equal to the
    previous resolved one becomes the previous input again (or the default, if none was given).
    A CREATE change set for a stack left in REVIEW_IN_PROGRESS (a change set never executed) reuses
    that stack, as the real service does (moto created a second stack with the same name).
    """

    def create_change_set(self: Any, stack_name: str, change_set_name: str, template: str, **kwargs: Any) -> Any:
        from moto.cloudformation.exceptions import AlreadyExistsException
        from moto.cloudformation.models import Stack

        parameters = dict(kwargs.pop("parameters", None) or {})
        change_set_type = kwargs.get("change_set_type", "CREATE")
        existing = [s for s in self.stacks.values() if s.name == stack_name]
        if change_set_type == "UPDATE" and existing:
            stack = existing[0]
            declared = Stack.parse_template(template).get("Parameters") or {}
            for key, slot in declared.items():
                if not str(slot.get("Type", "")).startswith("AWS::SSM::Parameter::") or key not in parameters:
                    continue
                if parameters[key] == stack.stack_parameters.get(key) and parameters[key] != stack.parameters.get(key):
                    if key in stack.parameters:
                        parameters[key] = stack.parameters[key]
                    else:
                        del parameters[key]
        elif change_set_type == "CREATE" and existing:
            if all(s.status == "REVIEW_IN_PROGRESS" for s in existing):
                for stale in existing:
                    del self.stacks[stale.stack_id]
                    for key in [k for k, cs in self.change_sets.items() if cs.stack_id == stale.stack_id]:
                        del self.change_sets[key]
            else:
                raise AlreadyExistsException(f"Stack [{stack_name}] already exists")
        return original(
            self,
            stack_name=stack_name,
            change_set_name=change_set_name,
            template=template,
            parameters=parameters,
            **kwargs,
        )

    return create_change_set


def _refresh_stack_from(stack: Any, change_set: Any, backend: Any) -> None:
    """After a change set ran: the stack's template, parameters, Outputs and exports are the new ones.

    (moto left the template of a CREATE change set at ``{}``, so Outputs stayed empty.) The Outputs
    are evaluated here, so that a bad one fails the operation instead of every later DescribeStacks.
    """
    from moto.cloudformation.parsing import OutputMap

    template_dict = stack.parse_template(change_set.template)
    output_map = OutputMap(stack.resource_map, template_dict, stack.stack_id)
    for key in output_map.outputs:
        output_map[key]
    new_exports = output_map.exports
    old_exports = [name for name, export in backend.exports.items() if export.exporting_stack_id == stack.stack_id]
    taken = {name for name in backend.exports if name not in old_exports}
    clashes = sorted(taken & {export.name for export in new_exports})
    if clashes:
        raise ValueError(f"Export names must be unique across a given region: {', '.join(clashes)}")
    stack.template = change_set.template
    stack.template_dict = template_dict
    stack.description = template_dict.get("Description")
    stack.parameters = dict(change_set.parameters or {})
    if change_set.tags:
        stack.tags = change_set.tags
    stack.output_map = output_map
    for name in old_exports:
        backend.exports.pop(name, None)
    for export in new_exports:
        backend.exports[export.name] = export


def _execute_change_set(self: Any, change_set_name: str, stack_name: str | None = None) -> None:
    """ExecuteChangeSet that ends in a real stack status (moto: no Outputs, exceptions as HTTP 500)."""
    change_set = _find_change_set(self, change_set_name, stack_name)
    if change_set.execution_status != "AVAILABLE":
        raise _invalid_status(
            f"ChangeSet [{change_set.change_set_id}] cannot be executed in its current execution status "
            f"of [{change_set.execution_status}]"
        )
    stack = self.stacks[change_set.stack_id]
    kind = change_set.change_set_type
    change_set.execution_status = "EXECUTE_IN_PROGRESS"
    stack.status = f"{kind}_IN_PROGRESS"
    stack.status_reason = "User Initiated"
    stack._add_stack_event(stack.status, resource_status_reason="User Initiated")
    stack.cross_stack_resources = self.exports  # moto gave change-set stacks no view of the exports
    stack.resource_map.cross_stack_resources = self.exports
    try:
        change_set.apply()
        _refresh_stack_from(stack, change_set, self)
    except Exception as error:
        LOG.warning("stack %s: %s failed: %s", stack.name, kind.lower(), error_reason(error))
        _fail_operation(stack, kind, error)
        change_set.execution_status = "EXECUTE_FAILED"
        change_set.status_reason = error_reason(error)
        return
    change_set.execution_status = "EXECUTE_COMPLETE"
    stack.status = f"{kind}_COMPLETE"
    stack.status_reason = None
    stack._add_stack_event(stack.status)


def _fail_operation(stack: Any, kind: str, error: BaseException) -> None:
    """End a failed create/update the way the service does: a rollback, with the reason to show.

    The failing resource already has its *_FAILED event; a create's resources are deleted again.
    """
    reason = error_reason(error)
    notes = "; ".join(getattr(error, "__notes__", []))
    detail = f"{reason} [{notes}]" if notes else reason
    if kind == "CREATE":
        from moto.cloudformation.parsing import OutputMap

        stack.output_map = OutputMap(stack.resource_map, {}, stack.stack_id)  # a rolled-back stack has no Outputs
        stack._add_stack_event("ROLLBACK_IN_PROGRESS", resource_status_reason=detail)
        try:
            stack.resource_map.delete()  # best effort: the real service deletes what it created
        except Exception as cleanup:
            LOG.warning("stack %s: rollback left resources behind: %s", stack.name, cleanup)
    else:
        stack._add_stack_event("UPDATE_ROLLBACK_IN_PROGRESS", resource_status_reason=detail)
    stack.status = _ROLLBACK_STATUS.get(kind, f"{kind}_FAILED")
    stack.status_reason = detail
    stack._add_stack_event(stack.status, resource_status_reason=detail)


def _create_resources(original: Callable[[Any], None]) -> Callable[[Any], None]:
    """CreateStack: a failing resource ends in ROLLBACK_COMPLETE with its reason (moto: HTTP 500)."""

    def create_resources(self: Any) -> None:
        try:
            original(self)
        except Exception as error:
            LOG.warning("stack %s: create failed: %s", self.name, error_reason(error))
            _fail_operation(self, "CREATE", error)

    return create_resources


def _describe_change_set(self: Any, change_set_name: str, stack_name: str | None = None) -> Any:
    """DescribeChangeSet per stack; ChangeSetNotFound when missing (moto: ValidationError)."""
    return _find_change_set(self, change_set_name, stack_name)


def _delete_change_set(self: Any, change_set_name: str, stack_name: str | None = None) -> None:
    """DeleteChangeSet per stack; ChangeSetNotFound when missing (moto: UnboundLocalError, HTTP 500)."""
    change_set = _find_change_set(self, change_set_name, stack_name)
    for key, value in list(self.change_sets.items()):
        if value is change_set:
            del self.change_sets[key]


def _describe_change_set_response(self: Any) -> Any:
    from moto.core.responses import ActionResult

    change_set = self.cloudformation_backend.describe_change_set(
        self._get_param("ChangeSetName"), stack_name=self._get_param("StackName")
    )
    return ActionResult(change_set)


def _delete_change_set_response(self: Any) -> Any:
    from moto.core.responses import EmptyResult

    self.cloudformation_backend.delete_change_set(
        self._get_param("ChangeSetName"), stack_name=self._get_param("StackName")
    )
    return EmptyResult()


def _execute_change_set_response(self: Any) -> Any:
    from moto.core.responses import EmptyResult

    self.cloudformation_backend.execute_change_set(
        self._get_param("ChangeSetName"), stack_name=self._get_param("StackName")
    )
    return EmptyResult()


def _validate_different_update(original: Callable[..., None]) -> Callable[..., None]:
    """CreateChangeSet without changes: a FAILED change set, as the real service answers.

    (moto refused the call with UpdateStack's "No updates are to be performed".)
    """

    def validate_different_update(self: Any, *args: Any, **kwargs: Any) -> None:
        if self._get_action() == "CreateChangeSet":
            return  # the backend marks an unchanged change set FAILED
        original(self, *args, **kwargs)

    return validate_different_update


def replacements() -> list[tuple[object, str, Callable[[Any], Any]]]:
    """(owner, attribute, make(original) -> replacement) for change sets and CreateStack's failures."""
    from moto.cloudformation.models import CloudFormationBackend, Stack
    from moto.cloudformation.responses import CloudFormationResponse

    backend, response = CloudFormationBackend, CloudFormationResponse
    return [
        (backend, "create_change_set", _create_change_set),
        (backend, "execute_change_set", lambda _original: _execute_change_set),
        (backend, "describe_change_set", lambda _original: _describe_change_set),
        (backend, "delete_change_set", lambda _original: _delete_change_set),
        (Stack, "create_resources", _create_resources),
        (response, "describe_change_set", lambda _original: _describe_change_set_response),
        (response, "delete_change_set", lambda _original: _delete_change_set_response),
        (response, "execute_change_set", lambda _original: _execute_change_set_response),
        (response, "_validate_different_update", _validate_different_update),
    ]
