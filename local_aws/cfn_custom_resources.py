"""CloudFormation in the local AWS: custom resources backed by a Lambda function, with all three requests.

The stacks use custom resources (CDK's provider framework and the project's own). moto 5.2.5 sent
only Create, fire-and-forget, with a ResponseURL on ``host.docker.internal`` that a function outside
Docker cannot reach; it never sent Update or Delete (an updated custom resource became None), and
its ResponseURL handler accepted SUCCESS only, then re-evaluated the whole stack, re-creating deleted
resources. Here the function gets Create, Update and Delete requests with a ResponseURL on the
emulator (``http://localhost:PORT/...``), the stack waits for the response, a new PhysicalResourceId
replaces the resource (the old one is deleted afterwards), and a FAILED response — or none within a
few seconds of the function's return — fails the stack with the function's reason, as in AWS.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

LOG = logging.getLogger(__name__)

#: Seconds a custom resource may take to answer after its function returned.
_RESPONSE_GRACE_SECONDS = 5.0
_endpoint = "http://localhost:5000"


def configure(endpoint: str) -> None:
    """Send ResponseURLs on the emulator at ``endpoint`` (``http://localhost:PORT``) from now on."""
    global _endpoint
    _endpoint = endpoint


class _CustomResourceFailed(Exception):
    """A custom resource answered FAILED, or not at all."""


@dataclass
class _Pending:
    """One request sent to a custom resource's function, waiting for its response."""

    done: threading.Event = field(default_factory=threading.Event)
    response: dict[str, Any] | None = None


_PENDING: dict[str, _Pending] = {}
_PENDING_LOCK = threading.Lock()


def _send_request(
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
    and :func:`_process_cfn_response` hands it over here. Raises :class:`_CustomResourceFailed` with
    the function's reason on FAILED, or with its error when it sent nothing.
    """
    from moto.awslambda.utils import get_backend as lambda_backend

    service_token = str(properties.get("ServiceToken", ""))
    request_id = str(uuid.uuid4())
    event: dict[str, Any] = {
        "RequestType": request_type,
        "ServiceToken": service_token,
        "ResponseURL": f"{_endpoint}/cloudformation_{region}/cfnresponse?stack={quote(stack_id, safe='')}",
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
        raise _CustomResourceFailed(f"{logical_id}: no function {service_token} for the custom resource") from error
    pending = _Pending()
    with _PENDING_LOCK:
        _PENDING[request_id] = pending
    try:
        response_headers: dict[str, Any] = {}
        payload = function.invoke(json.dumps(event), {}, response_headers)
        if not pending.done.wait(_RESPONSE_GRACE_SECONDS):
            runtime = getattr(function, "run_time", "")
            detail = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else str(payload)
            if not str(runtime).startswith("python"):
                detail = f"its {runtime} function does not run in the local emulator (Python functions only)"
            raise _CustomResourceFailed(
                f"{logical_id}: the custom resource's function sent no response to the {request_type} request: "
                f"{detail[:1000]}"
            )
    finally:
        with _PENDING_LOCK:
            _PENDING.pop(request_id, None)
    response = pending.response or {}
    if response.get("Status") != "SUCCESS":
        raise _CustomResourceFailed(
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
    response = _send_request(
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
    response = _send_request(
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
        except _CustomResourceFailed as error:
            LOG.warning("custom resource %s: deleting the replaced resource failed: %s", old_physical_id, error)
    original_resource.resource_name = new_physical_id
    original_resource.properties = properties
    original_resource.set_data(dict(response.get("Data") or {}))
    return original_resource


def _custom_delete(self: Any, account_id: str, region_name: str) -> None:
    """Delete a custom resource: send Delete (moto: nothing was sent)."""
    _send_request(
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


def replacements() -> list[tuple[object, str, Callable[[Any], Any]]]:
    """(owner, attribute, make(original) -> replacement) for custom resources."""
    from moto.cloudformation.custom_model import CustomModel
    from moto.cloudformation.responses import CloudFormationResponse

    return [
        (CloudFormationResponse, "process_cfn_response", lambda _original: _process_cfn_response),
        (CustomModel, "create_from_cloudformation_json", lambda _original: classmethod(_custom_create)),
        (CustomModel, "update_from_cloudformation_json", lambda _original: classmethod(_custom_update)),
        (CustomModel, "delete", lambda _original: _custom_delete),
    ]
