"""The local Panorama service on the emulator's port: the API subset the pipeline uses.

Panorama is not in moto (nor in current botocore), yet the pipeline registers packages and deploys
application instances with it; without a local service those steps could only be tried in an AWS
account with an appliance. :func:`mount` is the one way in: :class:`~local_aws.emulator.Emulator`
calls it with moto's WSGI app and serves the result, so the service shares moto's port and clients
reach it through ``AWS_ENDPOINT_URL`` like every other service. A request whose SigV4 credential
scope names the service ``panorama`` goes to this service, everything else to moto; the mount also
lets moto's CloudFormation create ``AWS::Panorama::Package`` (``panorama_cloudformation``).

Served: CreatePackage, DescribePackage, RegisterPackageVersion, DescribePackageVersion,
DeregisterPackageVersion, CreateApplicationInstance, DescribeApplicationInstance,
RemoveApplicationInstance, ListApplicationInstances, ListDevices and DescribeDevice, routed, parsed,
validated and answered from the carried API model (``panorama_protocol``); the other operations of
the model answer HTTP 501 ``NotImplementedException``. State and rules: ``panorama_backend``.

A PackageId is the package's id or ``packageName/<name>`` (the model's NodePackageId pattern allows
the ``/``; AWS's own Panorama tooling describes packages that way); both forms work everywhere.
Errors follow one rule where the model leaves a choice: an unknown id in the request's path is
ResourceNotFoundException (also for RegisterPackageVersion's package, which the model does not list
it for); an unknown thing named in the request body or in a document is ValidationException.

Known differences from the real service: one account and Region per backend (requests for any
Region are served by the same state); the storage location's ``Bucket`` is a plain bucket of the
emulator's S3, not an access-point ARN; camera node packages (CreateNodeFromTemplateJob) are not
emulated, so the packages that overrides name are not checked for registration; no request-rate
quotas, no IAM, no signature checks; package sharing (OwnerAccount of another account) is not
supported.
"""

from __future__ import annotations

import base64
import json
import logging
import uuid
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import urlsplit
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from werkzeug.wrappers import Request, Response

from local_aws.panorama_backend import PanoramaBackend
from local_aws.panorama_cloudformation import install_cloudformation_model
from local_aws.panorama_errors import PanoramaError, ValidationException
from local_aws.panorama_protocol import (
    OperationNotImplemented,
    match,
    parse_request,
    serialize_error,
    serialize_response,
    validate_request,
)

LOG = logging.getLogger(__name__)

#: Items per page of the list operations when MaxResults is not given (the model's maximum).
_DEFAULT_PAGE_SIZE = 25

_Operation = Callable[[PanoramaBackend, dict[str, Any]], dict[str, Any]]


# --- operations: API parameters → backend → API response ----------------------------------------


def _page(items: list[dict[str, Any]], key: str, params: dict[str, Any], operation: str) -> dict[str, Any]:
    """One page of ``items`` under ``key``; NextToken is an opaque offset bound to the operation."""
    size = params.get("MaxResults") or _DEFAULT_PAGE_SIZE
    start = 0
    if params.get("NextToken"):
        try:
            token = json.loads(base64.urlsafe_b64decode(params["NextToken"].encode("ascii")))
            start = int(token["offset"]) if token["operation"] == operation else -1
        except (ValueError, KeyError, TypeError) as error:
            raise ValidationException("NextToken is not a token of this operation", reason="OTHER") from error
        if start < 0:
            raise ValidationException("NextToken is not a token of this operation", reason="OTHER")
    page: dict[str, Any] = {key: items[start : start + size]}
    if start + size < len(items):
        token_text = json.dumps({"operation": operation, "offset": start + size}).encode("ascii")
        page["NextToken"] = base64.urlsafe_b64encode(token_text).decode("ascii")
    return page


def _create_package(backend: PanoramaBackend, p: dict[str, Any]) -> dict[str, Any]:
    return backend.create_package(p["PackageName"], p.get("Tags"))


def _describe_package(backend: PanoramaBackend, p: dict[str, Any]) -> dict[str, Any]:
    return backend.describe_package(p["PackageId"])


def _register_package_version(backend: PanoramaBackend, p: dict[str, Any]) -> dict[str, Any]:
    backend.register_package_version(
        p["PackageId"], p["PackageVersion"], p["PatchVersion"], bool(p.get("MarkLatest")), p.get("OwnerAccount")
    )
    return {}


def _describe_package_version(backend: PanoramaBackend, p: dict[str, Any]) -> dict[str, Any]:
    return backend.describe_package_version(
        p["PackageId"], p["PackageVersion"], p.get("PatchVersion"), p.get("OwnerAccount")
    )


def _deregister_package_version(backend: PanoramaBackend, p: dict[str, Any]) -> dict[str, Any]:
    backend.deregister_package_version(
        p["PackageId"],
        p["PackageVersion"],
        p["PatchVersion"],
        p.get("UpdatedLatestPatchVersion"),
        p.get("OwnerAccount"),
    )
    return {}


def _create_application_instance(backend: PanoramaBackend, p: dict[str, Any]) -> dict[str, Any]:
    instance_id = backend.create_application_instance(
        manifest=p["ManifestPayload"]["PayloadData"],
        device_id=p["DefaultRuntimeContextDevice"],
        name=p.get("Name"),
        description=p.get("Description"),
        overrides=(p.get("ManifestOverridesPayload") or {}).get("PayloadData"),
        runtime_role_arn=p.get("RuntimeRoleArn"),
        replaces=p.get("ApplicationInstanceIdToReplace"),
        tags=p.get("Tags"),
    )
    return {"ApplicationInstanceId": instance_id}


def _describe_application_instance(backend: PanoramaBackend, p: dict[str, Any]) -> dict[str, Any]:
    return backend.describe_application_instance(p["ApplicationInstanceId"])


def _remove_application_instance(backend: PanoramaBackend, p: dict[str, Any]) -> dict[str, Any]:
    backend.remove_application_instance(p["ApplicationInstanceId"])
    return {}


def _list_application_instances(backend: PanoramaBackend, p: dict[str, Any]) -> dict[str, Any]:
    items = backend.list_application_instances(p.get("DeviceId"), p.get("StatusFilter"))
    return _page(items, "ApplicationInstances", p, "ListApplicationInstances")


def _list_devices(backend: PanoramaBackend, p: dict[str, Any]) -> dict[str, Any]:
    items = backend.list_devices(
        p.get("NameFilter"), p.get("DeviceAggregatedStatusFilter"), p.get("SortBy"), p.get("SortOrder")
    )
    return _page(items, "Devices", p, "ListDevices")


def _describe_device(backend: PanoramaBackend, p: dict[str, Any]) -> dict[str, Any]:
    return backend.describe_device(p["DeviceId"])


#: The operations served, by the model's operation name.
_OPERATIONS: dict[str, _Operation] = {
    "CreatePackage": _create_package,
    "DescribePackage": _describe_package,
    "RegisterPackageVersion": _register_package_version,
    "DescribePackageVersion": _describe_package_version,
    "DeregisterPackageVersion": _deregister_package_version,
    "CreateApplicationInstance": _create_application_instance,
    "DescribeApplicationInstance": _describe_application_instance,
    "RemoveApplicationInstance": _remove_application_instance,
    "ListApplicationInstances": _list_application_instances,
    "ListDevices": _list_devices,
    "DescribeDevice": _describe_device,
}


# --- WSGI ------------------------------------------------------------------------------------------


class _PanoramaApp:
    """The service as a WSGI app."""

    def __init__(self, backend: PanoramaBackend) -> None:
        self.backend = backend

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        """Answer one request."""
        request = Request(environ)
        request_id = str(uuid.uuid4())
        try:
            raw_uri = environ.get("RAW_URI") or environ.get("REQUEST_URI")
            raw_path = urlsplit(str(raw_uri)).path if raw_uri else None  # still percent-encoded
            query = {key: request.args.getlist(key) for key in request.args}
            operation, path_params = match(request.method, raw_path, request.path, query)
            handler = _OPERATIONS.get(operation.name)
            if handler is None:
                raise OperationNotImplemented(
                    f"{operation.name} is not implemented by the local Panorama service "
                    f"(it serves {', '.join(sorted(_OPERATIONS))})"
                )
            params = parse_request(operation, path_params, query, dict(request.headers), request.get_data())
            validate_request(operation, params)
            status, headers, body = serialize_response(operation, handler(self.backend, params))
        except PanoramaError as error:
            status, headers, body = serialize_error(error)
        except Exception as error:  # a bug of the local service: answer as the service would, and log it
            LOG.exception("local Panorama service failed on %s %s", request.method, request.path)
            status, headers, body = serialize_error(PanoramaError(f"{type(error).__name__}: {error}"))
        headers["x-amzn-RequestId"] = request_id
        return Response(body, status=status, headers=headers)(environ, start_response)


def _signing_service(environ: WSGIEnvironment) -> str | None:
    """The service named by the request's SigV4 credential scope (None when unsigned or not SigV4)."""
    authorization = str(environ.get("HTTP_AUTHORIZATION") or "")
    if "Credential=" not in authorization:
        return None
    scope = authorization.split("Credential=", 1)[1].split(",", 1)[0].strip().split("/")
    return scope[3].lower() if len(scope) == 5 else None


def is_panorama_request(environ: WSGIEnvironment) -> bool:
    """A request for this service: signed for ``panorama`` (its paths overlap other services' paths)."""
    return _signing_service(environ) == "panorama"


def mount(moto_app: WSGIApplication, backend: PanoramaBackend) -> WSGIApplication:
    """Moto's app with the service of ``backend`` on the same port, and its CloudFormation resource type."""
    install_cloudformation_model(backend)
    panorama = _PanoramaApp(backend)

    def dispatch(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        target = panorama if is_panorama_request(environ) else moto_app
        return target(environ, start_response)

    return dispatch
