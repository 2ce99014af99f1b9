"""CloudFormation in the emulator: what the CDK CLI and the project's templates need beyond moto 5.2.5.

Each replacement names the moto limitation it addresses; :func:`replacements` lists them for
``moto_patches.install``. In short:

- change sets (the CDK CLI deploys only through them): executing one keeps the template, parameters,
  Outputs and exports; a failure ends in ROLLBACK_COMPLETE / UPDATE_ROLLBACK_COMPLETE with the reason
  (moto raised an HTTP 500); change sets are looked up per stack (every CDK stack uses the same
  change-set name); a missing one is ``ChangeSetNotFound``; ``UsePreviousValue`` on an SSM-typed
  parameter (CDK's ``BootstrapVersion``) re-reads the parameter instead of crashing;
- ``Fn::GetStackOutput`` (CDK's weak cross-stack references) resolves from the named stack's Outputs;
- custom resources backed by a Lambda function get Create, Update and Delete requests with a
  ResponseURL the function can reach (``http://localhost:PORT/...``); the stack waits for the
  response, and a FAILED response fails the stack with the function's reason;
- ``UpdateTerminationProtection`` is implemented, and a protected stack cannot be deleted;
- a stack's resources are deleted dependents first (a custom resource before its function);
- ``AWS::CloudWatch::Alarm`` is a resource type (moto has the API only); ``AWS::S3::Bucket`` also
  applies VersioningConfiguration and EventBridge notifications;
- resource events (CREATE_COMPLETE / CREATE_FAILED, and a note for each resource type moto does not
  emulate and skips) so that the CDK CLI shows what happened to each resource.

Still skipped (no moto model; nothing in the project's templates reads them): AWS::S3::BucketPolicy,
AWS::SNS::TopicPolicy, AWS::CDK::Metadata. IAM is not enforced anyway.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

LOG = logging.getLogger(__name__)

#: Stack statuses in which an operation ended badly (the CDK CLI reports these as failures).
ROLLBACK_STATUS = {
    "CREATE": "ROLLBACK_COMPLETE",
    "UPDATE": "UPDATE_ROLLBACK_COMPLETE",
    "IMPORT": "IMPORT_ROLLBACK_COMPLETE",
}


@dataclass
class CloudFormationSettings:
    """What the CloudFormation extensions need to know of the running emulator."""

    #: Where custom-resource functions send their response (``http://localhost:PORT``).
    endpoint: str = "http://localhost:5000"
    #: Seconds to wait for a custom resource's response after its function returned.
    response_grace_seconds: float = 5.0


SETTINGS = CloudFormationSettings()


def configure(settings: CloudFormationSettings) -> None:
    """Use ``settings`` from now on."""
    global SETTINGS
    SETTINGS = settings


# --------------------------------------------------------------------------------------------------
# Errors with the codes the real service (and so the CDK CLI) uses
# --------------------------------------------------------------------------------------------------


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


class CustomResourceFailed(Exception):
    """A custom resource answered FAILED, or not at all."""


# --------------------------------------------------------------------------------------------------
# Events
# --------------------------------------------------------------------------------------------------


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
            _resource_event(stack, logical_id, resource_type, f"{verb}_FAILED", _reason(error))
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


def _reason(error: BaseException) -> str:
    """The message of ``error`` (moto's errors keep it in ``message``)."""
    return str(getattr(error, "message", None) or str(error) or type(error).__name__)


# --------------------------------------------------------------------------------------------------
# Fn::GetStackOutput
# --------------------------------------------------------------------------------------------------


def get_stack_output(spec: Any, resources_map: Any) -> Any:
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
            return get_stack_output(clean_json(resource_json["Fn::GetStackOutput"], resources_map), resources_map)
        return original(resource_json, resources_map)

    return clean_json


# --------------------------------------------------------------------------------------------------
# Change sets
# --------------------------------------------------------------------------------------------------


def find_change_set(backend: Any, change_set_name: str, stack_name: str | None) -> Any:
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
    change_set = find_change_set(self, change_set_name, stack_name)
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
        LOG.warning("stack %s: %s failed: %s", stack.name, kind.lower(), _reason(error))
        _fail_operation(stack, kind, error)
        change_set.execution_status = "EXECUTE_FAILED"
        change_set.status_reason = _reason(error)
        return
    change_set.execution_status = "EXECUTE_COMPLETE"
    stack.status = f"{kind}_COMPLETE"
    stack.status_reason = None
    stack._add_stack_event(stack.status)


def _fail_operation(stack: Any, kind: str, error: BaseException) -> None:
    """End a failed create/update the way the service does: a rollback, with the reason to show.

    The failing resource already has its *_FAILED event; a create's resources are deleted again.
    """
    reason = _reason(error)
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
    stack.status = ROLLBACK_STATUS.get(kind, f"{kind}_FAILED")
    stack.status_reason = detail
    stack._add_stack_event(stack.status, resource_status_reason=detail)


def _create_resources(original: Callable[[Any], None]) -> Callable[[Any], None]:
    """CreateStack: a failing resource ends in ROLLBACK_COMPLETE with its reason (moto: HTTP 500)."""

    def create_resources(self: Any) -> None:
        try:
            original(self)
        except Exception as error:
            LOG.warning("stack %s: create failed: %s", self.name, _reason(error))
            _fail_operation(self, "CREATE", error)

    return create_resources


def _describe_change_set(self: Any, change_set_name: str, stack_name: str | None = None) -> Any:
    """DescribeChangeSet per stack; ChangeSetNotFound when missing (moto: ValidationError)."""
    return find_change_set(self, change_set_name, stack_name)


def _delete_change_set(self: Any, change_set_name: str, stack_name: str | None = None) -> None:
    """DeleteChangeSet per stack; ChangeSetNotFound when missing (moto: UnboundLocalError, HTTP 500)."""
    change_set = find_change_set(self, change_set_name, stack_name)
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


# --------------------------------------------------------------------------------------------------
# Termination protection and deletion
# --------------------------------------------------------------------------------------------------


def _validate_different_update(original: Callable[..., None]) -> Callable[..., None]:
    """CreateChangeSet without changes: a FAILED change set, as the real service answers.

    (moto refused the call with UpdateStack's "No updates are to be performed".)
    """

    def validate_different_update(self: Any, *args: Any, **kwargs: Any) -> None:
        if self._get_action() == "CreateChangeSet":
            return  # the backend marks an unchanged change set FAILED
        original(self, *args, **kwargs)

    return validate_different_update


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
            LOG.warning("stack %s: delete failed: %s", stack.name, _reason(error))
            self.deleted_stacks.pop(stack.stack_id, None)
            self.stacks[stack.stack_id] = stack
            stack.status = "DELETE_FAILED"
            stack.status_reason = _reason(error)
            stack._add_stack_event("DELETE_FAILED", resource_status_reason=_reason(error))

    return delete_stack


def references(value: Any, names: set[str]) -> set[str]:
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
            found |= references(item, names)
    elif isinstance(value, list):
        for item in value:
            found |= references(item, names)
    return found


def _delete_resources(self: Any) -> None:
    """Delete a stack's resources dependents first, as the service does.

    (moto deleted them in set order, retrying failures, so a custom resource could outlive the
    function that must answer its Delete request.) Resources with ``DeletionPolicy: Retain`` stay.
    """
    templates: dict[str, Any] = self._resource_json_map
    names = set(templates)
    depends = {name: references(body, names) - {name} for name, body in templates.items()}
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


# --------------------------------------------------------------------------------------------------
# Custom resources
# --------------------------------------------------------------------------------------------------


@dataclass
class _Pending:
    """One request sent to a custom resource's function, waiting for its response."""

    done: threading.Event = field(default_factory=threading.Event)
    response: dict[str, Any] | None = None


_PENDING: dict[str, _Pending] = {}
_PENDING_LOCK = threading.Lock()


def send_custom_resource_request(
    request_type: str,
    *,
    account_id: str,
    region: str,
    stack_id: str,
    logical_id: str,
    resource_type: str,
    properties: dict[str, Any],
    physical_id: str | None = None,
    old_properties: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Send one Create/Update/Delete request to the function and return its SUCCESS response.

    The function runs now (our Lambda runner), PUTs its response to the ResponseURL on the emulator,
    and :func:`_process_cfn_response` hands it over here. Raises :class:`CustomResourceFailed` with
    the function's reason on FAILED, or with its error when it sent nothing.
    """
    from moto.awslambda.utils import get_backend as lambda_backend

    service_token = str(properties.get("ServiceToken", ""))
    request_id = str(uuid.uuid4())
    event: dict[str, Any] = {
        "RequestType": request_type,
        "ServiceToken": service_token,
        "ResponseURL": f"{SETTINGS.endpoint}/cloudformation_{region}/cfnresponse?stack={quote(stack_id, safe='')}",
        "StackId": stack_id,
        "RequestId": request_id,
        "LogicalResourceId": logical_id,
        "ResourceType": resource_type,
        "ResourceProperties": properties,
    }
    if physical_id is not None:
        event["PhysicalResourceId"] = physical_id
    if old_properties is not None:
        event["OldResourceProperties"] = old_properties
    try:
        function = lambda_backend(account_id, region).get_function(service_token)
    except Exception as error:
        raise CustomResourceFailed(f"{logical_id}: no function {service_token} for the custom resource") from error
    pending = _Pending()
    with _PENDING_LOCK:
        _PENDING[request_id] = pending
    try:
        response_headers: dict[str, Any] = {}
        payload = function.invoke(json.dumps(event), {}, response_headers)
        if not pending.done.wait(SETTINGS.response_grace_seconds):
            runtime = getattr(function, "run_time", "")
            detail = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else str(payload)
            if not str(runtime).startswith("python"):
                detail = f"its {runtime} function does not run in the local emulator (Python functions only)"
            raise CustomResourceFailed(
                f"{logical_id}: the custom resource's function sent no response to the {request_type} request: "
                f"{detail[:1000]}"
            )
    finally:
        with _PENDING_LOCK:
            _PENDING.pop(request_id, None)
    response = pending.response or {}
    if response.get("Status") != "SUCCESS":
        raise CustomResourceFailed(
            "Received response status [FAILED] from custom resource. Message returned: "
            f"{response.get('Reason') or 'no reason given'} (RequestId: {request_id})"
        )
    return response


def _custom_create(
    cls: Any,
    /,
    resource_name: str,
    cloudformation_json: dict[str, Any],
    account_id: str,
    region_name: str,
    **kwargs: Any,
) -> Any:
    """Create a custom resource: send Create and wait (moto: fire and forget, ResponseURL on host.docker.internal)."""
    from moto.cloudformation.custom_model import CustomModel
    from moto.cloudformation.models import cloudformation_backends

    logical_id, stack_id, resource_type = kwargs["LogicalId"], kwargs["StackId"], kwargs["ResourceType"]
    properties = dict(cloudformation_json.get("Properties") or {})
    response = send_custom_resource_request(
        "Create",
        account_id=account_id,
        region=region_name,
        stack_id=stack_id,
        logical_id=logical_id,
        resource_type=resource_type,
        properties=properties,
    )
    physical_id = str(response.get("PhysicalResourceId") or resource_name)
    model: Any = CustomModel  # abstract for mypy; moto instantiates it the same way
    resource = model(region_name, str(response.get("RequestId", "")), logical_id, physical_id)
    resource.set_data(dict(response.get("Data") or {}))
    resource.account_id = account_id
    resource.stack_id = stack_id
    resource.resource_type = resource_type
    resource.properties = properties
    stack = cloudformation_backends[account_id][region_name].stacks.get(stack_id)
    if stack is not None:
        stack.add_custom_resource(resource)
    return resource


def _custom_update(
    cls: Any,
    /,
    original_resource: Any,
    new_resource_name: str,
    cloudformation_json: dict[str, Any],
    account_id: str,
    region_name: str,
) -> Any:
    """Update a custom resource: send Update (moto: none, and the resource became None)."""
    properties = dict(cloudformation_json.get("Properties") or {})
    response = send_custom_resource_request(
        "Update",
        account_id=account_id,
        region=region_name,
        stack_id=original_resource.stack_id,
        logical_id=original_resource.logical_id,
        resource_type=original_resource.resource_type,
        properties=properties,
        physical_id=original_resource.physical_resource_id,
        old_properties=original_resource.properties,
    )
    old_physical_id = original_resource.physical_resource_id
    new_physical_id = str(response.get("PhysicalResourceId") or old_physical_id)
    if new_physical_id != old_physical_id:  # replacement: the service deletes the old one afterwards
        try:
            original_resource.delete(account_id, region_name)
        except CustomResourceFailed as error:
            LOG.warning("custom resource %s: deleting the replaced resource failed: %s", old_physical_id, error)
    original_resource.resource_name = new_physical_id
    original_resource.properties = properties
    original_resource.set_data(dict(response.get("Data") or {}))
    return original_resource


def _custom_delete(self: Any, account_id: str, region_name: str) -> None:
    """Delete a custom resource: send Delete (moto: nothing was sent)."""
    send_custom_resource_request(
        "Delete",
        account_id=account_id,
        region=region_name,
        stack_id=self.stack_id,
        logical_id=self.logical_id,
        resource_type=self.resource_type,
        properties=self.properties,
        physical_id=self.physical_resource_id,
    )


def _process_cfn_response(self: Any) -> tuple[int, dict[str, int], str]:
    """The ResponseURL's handler: hand the response to the request waiting for it.

    (moto handled SUCCESS only, and then re-evaluated the whole stack, re-creating deleted resources.)
    """
    body = self.body.decode("utf-8") if isinstance(self.body, bytes) else str(self.body or "")
    try:
        response = json.loads(body)
    except ValueError:
        return 400, {"status": 400}, json.dumps({"error": "the response is not JSON"})
    with _PENDING_LOCK:
        pending = _PENDING.get(str(response.get("RequestId", "")))
    if pending is None:
        LOG.warning("custom resource response for an unknown request: %s", body[:300])
        return 404, {"status": 404}, json.dumps({"error": "unknown RequestId"})
    pending.response = response
    pending.done.set()
    return 200, {"status": 200}, ""


# --------------------------------------------------------------------------------------------------
# Resource types moto's CloudFormation lacks (its APIs exist)
# --------------------------------------------------------------------------------------------------


def _metric_queries(metrics: Any) -> list[Any] | None:
    """CloudFormation's ``Metrics`` (metric math) as moto's MetricDataQuery objects."""
    from moto.cloudwatch.models import Dimension, Metric, MetricDataQuery, MetricStat

    if not metrics:
        return None
    queries = []
    for metric in metrics:
        stat: Any = metric.get("MetricStat") or {}
        inner: Any = stat.get("Metric") or {}
        metric_stat = None
        if inner.get("MetricName"):
            dimensions = [Dimension(name=d.get("Name"), value=d.get("Value")) for d in inner.get("Dimensions") or []]
            metric_stat = MetricStat(
                metric=Metric(metric_name=inner["MetricName"], namespace=inner.get("Namespace"), dimensions=dimensions),
                period=stat.get("Period"),
                stat=stat.get("Stat"),
                unit=stat.get("Unit"),
            )
        queries.append(
            MetricDataQuery(
                query_id=metric.get("Id"),
                label=metric.get("Label"),
                period=metric.get("Period"),
                return_data=metric.get("ReturnData"),
                expression=metric.get("Expression"),
                metric_stat=metric_stat,
            )
        )
    return queries


class CloudWatchAlarm:
    """``AWS::CloudWatch::Alarm`` for moto's CloudFormation (moto has PutMetricAlarm, not the type).

    Ref is the alarm's name, GetAtt Arn its ARN, as in CloudFormation. A plain class handed to
    moto through its table of types (not a ``CloudFormationModel`` subclass, which would stay
    registered after :func:`moto_patches.uninstall`).
    """

    def __init__(self, alarm: Any) -> None:
        """Wrap moto's Alarm."""
        self.alarm = alarm

    @staticmethod
    def cloudformation_type() -> str:
        """The resource type."""
        return "AWS::CloudWatch::Alarm"

    @staticmethod
    def cloudformation_name_type() -> str:
        """The property that names the resource."""
        return "AlarmName"

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        """GetAtt attributes."""
        return attr == "Arn"

    @property
    def physical_resource_id(self) -> str:
        """Ref: the alarm's name."""
        return str(self.alarm.name)

    def get_cfn_attribute(self, attribute_name: str) -> Any:
        """GetAtt Arn."""
        from moto.cloudformation.exceptions import UnformattedGetAttTemplateException

        if attribute_name == "Arn":
            return self.alarm.alarm_arn
        raise UnformattedGetAttTemplateException()

    def is_created(self) -> bool:
        """Created synchronously."""
        return True

    @classmethod
    def create_from_cloudformation_json(
        cls, resource_name: str, cloudformation_json: dict[str, Any], account_id: str, region_name: str, **kwargs: Any
    ) -> CloudWatchAlarm:
        """PutMetricAlarm with the resource's properties."""
        from moto.cloudwatch.models import cloudwatch_backends

        props: Any = cloudformation_json.get("Properties") or {}
        alarm = cloudwatch_backends[account_id][region_name].put_metric_alarm(
            name=resource_name,
            namespace=props.get("Namespace"),
            metric_name=props.get("MetricName"),
            metric_data_queries=_metric_queries(props.get("Metrics")),
            comparison_operator=props.get("ComparisonOperator"),
            evaluation_periods=props.get("EvaluationPeriods"),
            datapoints_to_alarm=props.get("DatapointsToAlarm"),
            period=props.get("Period"),
            threshold=props.get("Threshold"),
            statistic=props.get("Statistic"),
            extended_statistic=props.get("ExtendedStatistic"),
            description=props.get("AlarmDescription"),
            dimensions=props.get("Dimensions") or [],
            alarm_actions=props.get("AlarmActions") or [],
            ok_actions=props.get("OKActions") or [],
            insufficient_data_actions=props.get("InsufficientDataActions") or [],
            unit=props.get("Unit"),
            actions_enabled=props.get("ActionsEnabled", True) not in (False, "false"),
            treat_missing_data=props.get("TreatMissingData"),
            evaluate_low_sample_count_percentile=props.get("EvaluateLowSampleCountPercentile"),
            threshold_metric_id=props.get("ThresholdMetricId"),
            tags=props.get("Tags") or [],
        )
        return cls(alarm)

    @classmethod
    def update_from_cloudformation_json(
        cls,
        original_resource: CloudWatchAlarm,
        new_resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
    ) -> CloudWatchAlarm:
        """PutMetricAlarm again (a new AlarmName replaces the alarm)."""
        name = (cloudformation_json.get("Properties") or {}).get("AlarmName") or original_resource.physical_resource_id
        if name != original_resource.physical_resource_id:
            original_resource.delete(account_id, region_name)
        return cls.create_from_cloudformation_json(name, cloudformation_json, account_id, region_name)

    @classmethod
    def delete_from_cloudformation_json(
        cls, resource_name: str, cloudformation_json: dict[str, Any], account_id: str, region_name: str
    ) -> None:
        """DeleteAlarms."""
        from moto.cloudwatch.models import cloudwatch_backends

        cloudwatch_backends[account_id][region_name].delete_alarms([resource_name])

    def delete(self, account_id: str, region_name: str) -> None:
        """DeleteAlarms."""
        self.delete_from_cloudformation_json(self.physical_resource_id, {}, account_id, region_name)


def _bucket_from_cloudformation(original: Callable[..., Any]) -> Any:
    """AWS::S3::Bucket: also VersioningConfiguration and EventBridge notifications.

    (moto applied only BucketEncryption and Tags, so objects had no versions and the data bucket's
    EventBridge rule never saw an object.)
    """

    def create(
        cls: Any, /, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str, **kwargs: Any
    ) -> Any:
        bucket = original(resource_name, cloudformation_json, account_id, region_name, **kwargs)
        properties: Any = cloudformation_json.get("Properties") or {}
        status = (properties.get("VersioningConfiguration") or {}).get("Status")
        if status:
            bucket.versioning_status = status
        event_bridge = (properties.get("NotificationConfiguration") or {}).get("EventBridgeConfiguration") or {}
        if event_bridge.get("EventBridgeEnabled") in (True, "true"):
            bucket.set_notification_configuration({"EventBridgeConfiguration": {}})
        return bucket

    return classmethod(create)


#: Resource types added to moto's table, by type.
EXTRA_TYPES: dict[str, Any] = {CloudWatchAlarm.cloudformation_type(): CloudWatchAlarm}


class _WithExtraTypes:
    """moto's cached type table (``get_model_map`` / ``get_name_type_map``) plus :data:`EXTRA_TYPES`."""

    def __init__(self, original: Any, extra: Callable[[], dict[str, Any]]) -> None:
        self.original = original
        self.extra = extra

    def __call__(self) -> dict[str, Any]:
        return {**self.original(), **self.extra()}

    def cache_clear(self) -> None:
        """Forget moto's cached table (new CloudFormationModel subclasses count from now)."""
        self.original.cache_clear()


def _with_alarm_models(original: Any) -> Any:
    """``get_model_map`` with the extra types.

    (moto: "No Moto CloudFormation support for AWS::CloudWatch::Alarm": skipped, so the pipeline
    dashboard's GetAtt on an alarm failed the stack.)
    """
    return _WithExtraTypes(original, lambda: dict(EXTRA_TYPES))


def _with_alarm_names(original: Any) -> Any:
    """``get_name_type_map`` with the extra types' name properties."""
    return _WithExtraTypes(original, lambda: {k: v.cloudformation_name_type() for k, v in EXTRA_TYPES.items()})


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


# --------------------------------------------------------------------------------------------------
# The list moto_patches applies
# --------------------------------------------------------------------------------------------------


def replacements() -> Iterable[tuple[object, str, Callable[[Any], Any]]]:
    """(owner, attribute, make(original) -> replacement) for every CloudFormation patch."""
    from moto.cloudformation import parsing
    from moto.cloudformation.custom_model import CustomModel
    from moto.cloudformation.models import CloudFormationBackend, Stack
    from moto.cloudformation.parsing import ResourceMap
    from moto.cloudformation.responses import CloudFormationResponse
    from moto.s3.models import FakeBucket

    backend, response = CloudFormationBackend, CloudFormationResponse
    return [
        (parsing, "clean_json", _clean_json),
        (parsing, "warnings", _QuietWarnings),
        (parsing, "get_model_map", _with_alarm_models),
        (parsing, "get_name_type_map", _with_alarm_names),
        (parsing, "parse_and_create_resource", functools.partial(_parse_and_event, "CREATE")),
        (parsing, "parse_and_update_resource", functools.partial(_parse_and_event, "UPDATE")),
        (backend, "create_change_set", _create_change_set),
        (backend, "execute_change_set", lambda _original: _execute_change_set),
        (backend, "describe_change_set", lambda _original: _describe_change_set),
        (backend, "delete_change_set", lambda _original: _delete_change_set),
        (backend, "delete_stack", _delete_stack),
        (Stack, "create_resources", _create_resources),
        (ResourceMap, "delete", lambda _original: _delete_resources),
        (response, "describe_change_set", lambda _original: _describe_change_set_response),
        (response, "delete_change_set", lambda _original: _delete_change_set_response),
        (response, "execute_change_set", lambda _original: _execute_change_set_response),
        (response, "_validate_different_update", _validate_different_update),
        (response, "update_termination_protection", lambda _original: _update_termination_protection_response),
        (response, "process_cfn_response", lambda _original: _process_cfn_response),
        (FakeBucket, "create_from_cloudformation_json", _bucket_from_cloudformation),
        (CustomModel, "create_from_cloudformation_json", lambda _original: classmethod(_custom_create)),
        (CustomModel, "update_from_cloudformation_json", lambda _original: classmethod(_custom_update)),
        (CustomModel, "delete", lambda _original: _custom_delete),
    ]
