"""A local AWS Panorama service for the API subset the pipeline uses (DESIGN.md §4).

Panorama is not in moto (nor in current botocore): this module serves CreatePackage,
DescribePackage, RegisterPackageVersion, DescribePackageVersion, DeregisterPackageVersion,
CreateApplicationInstance, DescribeApplicationInstance, RemoveApplicationInstance,
ListApplicationInstances, ListDevices and DescribeDevice from the carried API model
(``lambda_handlers/botocore_data``): routing, request parsing and validation, responses and
errors all follow that model (:mod:`panorama_protocol`); the state and rules live in
:class:`PanoramaBackend` (:mod:`panorama_backend`). The other operations of the model answer
HTTP 501 ``NotImplementedException``.

Three ways in:

1. :func:`panorama_wsgi_app` — a WSGI app for the service alone (any WSGI server; clients reach it
   through ``AWS_ENDPOINT_URL_PANORAMA``).
2. On moto's port: a request whose SigV4 credential scope names the service ``panorama`` (and the
   control routes under ``/_panopipe/panorama/``) goes to this service, everything else to moto's
   app. :func:`middleware_for` ``(backend)`` is a wrap for the emulator (``Emulator(wrap=...)``: it
   takes moto's WSGI app and returns the app to serve); :func:`wrap` is the same with a backend
   configured from the environment (``--wrap local_aws.panorama:wrap``, see
   :func:`backend_from_environment`); :func:`moto_app_with_panorama` builds moto's app itself, to
   serve with ``werkzeug.serving.make_server(host, port, app, threaded=True,
   request_handler=MotoRequestHandler)``; :func:`panorama_middleware` is the dispatch alone.
3. :func:`install_cloudformation_model` — moto's CloudFormation creates ``AWS::Panorama::Package``
   resources in the backend (Ref, GetAtt, delete), so the real templates deploy unchanged. Call it
   before the first stack is created.

Control route for other processes (the CLI, end-to-end tests): ``POST /_panopipe/panorama/fail-deployments``
with JSON ``{"device": <id or name>, "count": <n>, "reason": <optional text>}`` makes the next ``n``
deployments on that device end DEPLOYMENT_FAILED (:func:`request_failed_deployments` sends it).

A PackageId is the package's id or ``packageName/<name>`` (the model's NodePackageId pattern allows
the ``/``; AWS's own Panorama tooling describes packages that way); both forms work everywhere.

Known differences from the real service:

- One account and Region per backend: requests for any Region are served by the same state.
- The storage location's ``Bucket`` is a plain bucket of the emulator's S3
  (``panorama-local-storage-<account>-<region>``), not an S3 access-point ARN.
- The code package is never registered by the pipeline locally (its container image needs Docker):
  when a graph names a package that exists (the stack's ``AWS::Panorama::Package``) but has no
  version at all, without a patch version, and wires its node with edges (a code node), the service
  registers that version itself (REGISTER_COMPLETED, a synthetic patch version) and skips its port
  checks.
- Camera node packages (CreateNodeFromTemplateJob) are not emulated: the packages that overrides
  name are not checked for registration.
- Statuses move on by describes, not by time (:class:`Progress`): DescribePackageVersion and
  DescribeApplicationInstance advance them; List* calls do not. RemoveApplicationInstance is
  immediate. A replaced instance becomes REMOVAL_SUCCEEDED when its replacement's deployment ends
  (succeeded or failed: the device swapped the applications).
- Errors follow one rule where the model leaves a choice: an unknown id in the request's path is
  ResourceNotFoundException (also for RegisterPackageVersion's package, which the model does not
  list it for); an unknown thing named in the request body or in a document (the device, the
  replaced instance and package versions of CreateApplicationInstance, which models no
  ResourceNotFoundException) or a missing package manifest is ValidationException. The quota of
  20 versions per package is ServiceQuotaExceededException (a modeled exception of the service,
  though not listed for RegisterPackageVersion).
- No request-rate quotas, no IAM, no signature checks; package sharing (OwnerAccount of another
  account) is not supported.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from werkzeug.wrappers import Request, Response

from local_aws.panorama_backend import (
    DEFAULT_ACCOUNT_ID,
    DEFAULT_PAGE_SIZE,
    DEFAULT_REGION,
    MAX_VERSIONS_PER_PACKAGE,
    MotoS3Store,
    PanoramaBackend,
    PanoramaError,
    Progress,
    S3ClientStore,
    ValidationException,
    device_id_for_name,
)
from local_aws.panorama_cloudformation import PanoramaPackage, install_cloudformation_model
from local_aws.panorama_protocol import (
    OperationNotImplemented,
    match,
    parse_request,
    serialize_error,
    serialize_response,
    validate_request,
)

LOG = logging.getLogger(__name__)

#: Path prefix of the control routes (never an operation path of the model).
CONTROL_PREFIX = "/_panopipe/panorama/"
FAIL_DEPLOYMENTS_PATH = CONTROL_PREFIX + "fail-deployments"

WSGIEnviron = dict[str, Any]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[WSGIEnviron, StartResponse], Iterable[bytes]]
Operation = Callable[[PanoramaBackend, dict[str, Any]], dict[str, Any]]


# --- operations: API parameters → backend → API response ----------------------------------------


def _page(items: list[dict[str, Any]], key: str, params: dict[str, Any], operation: str) -> dict[str, Any]:
    """One page of ``items`` under ``key``; NextToken is an opaque offset bound to the operation."""
    size = params.get("MaxResults") or DEFAULT_PAGE_SIZE
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
OPERATIONS: dict[str, Operation] = {
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


class PanoramaApp:
    """The service as a WSGI app; ``backend`` may be swapped (tests, a reset emulator)."""

    def __init__(self, backend: PanoramaBackend) -> None:
        self.backend = backend

    def __call__(self, environ: WSGIEnviron, start_response: StartResponse) -> Iterable[bytes]:
        """Answer one request."""
        request = Request(environ)
        if request.path.startswith(CONTROL_PREFIX):
            response = self._control(request)
        else:
            response = self._operation(request, environ)
        return response(environ, start_response)

    def _operation(self, request: Request, environ: WSGIEnviron) -> Response:
        request_id = str(uuid.uuid4())
        try:
            raw_uri = environ.get("RAW_URI") or environ.get("REQUEST_URI")
            raw_path = urlsplit(str(raw_uri)).path if raw_uri else None  # still percent-encoded
            query = {key: request.args.getlist(key) for key in request.args}
            operation, path_params = match(request.method, raw_path, request.path, query)
            handler = OPERATIONS.get(operation.name)
            if handler is None:
                raise OperationNotImplemented(
                    f"{operation.name} is not implemented by the local Panorama service "
                    f"(it serves {', '.join(sorted(OPERATIONS))})"
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
        return Response(body, status=status, headers=headers)

    def _control(self, request: Request) -> Response:
        if request.path != FAIL_DEPLOYMENTS_PATH or request.method != "POST":
            return _json_response({"Message": f"no control route {request.method} {request.path}"}, 404)
        try:
            document = json.loads(request.get_data() or b"{}")
            device, count = str(document["device"]), int(document.get("count", 1))
            reason = document.get("reason")
            pending = self.backend.fail_next_deployments(device, count, str(reason) if reason else None)
        except (ValueError, KeyError, TypeError) as error:
            return _json_response({"Message": f"expected {{'device', 'count', 'reason'}}: {error!r}"}, 400)
        except PanoramaError as error:
            return _json_response({"Message": error.message}, error.status)
        return _json_response({"device": device, "pendingFailures": pending}, 200)


def _json_response(document: dict[str, Any], status: int) -> Response:
    return Response(json.dumps(document), status=status, content_type="application/json")


def panorama_wsgi_app(backend: PanoramaBackend) -> PanoramaApp:
    """The local Panorama service as a WSGI app."""
    return PanoramaApp(backend)


def signing_service(environ: WSGIEnviron) -> str | None:
    """The service named by the request's SigV4 credential scope (None when unsigned or not SigV4)."""
    authorization = str(environ.get("HTTP_AUTHORIZATION") or "")
    if "Credential=" not in authorization:
        return None
    scope = authorization.split("Credential=", 1)[1].split(",", 1)[0].strip().split("/")
    return scope[3].lower() if len(scope) == 5 else None


def is_panorama_request(environ: WSGIEnviron) -> bool:
    """A request for this service: signed for ``panorama``, or one of the control routes."""
    path = str(environ.get("PATH_INFO") or "")
    return path.startswith(CONTROL_PREFIX) or signing_service(environ) == "panorama"


def panorama_middleware(panorama: WSGIApp, other: WSGIApp) -> WSGIApp:
    """A WSGI app that sends Panorama requests to ``panorama`` and everything else to ``other``."""

    def dispatch(environ: WSGIEnviron, start_response: StartResponse) -> Iterable[bytes]:
        target = panorama if is_panorama_request(environ) else other
        return target(environ, start_response)

    return dispatch


def middleware_for(backend: PanoramaBackend) -> Callable[[WSGIApp], WSGIApp]:
    """A wrap of moto's app (``Emulator(wrap=...)``) that mounts the service and its CloudFormation model."""

    def wrap_moto(moto_app: WSGIApp) -> WSGIApp:
        install_cloudformation_model(backend)
        return panorama_middleware(panorama_wsgi_app(backend), moto_app)

    return wrap_moto


def backend_from_environment(environ: Mapping[str, str] | None = None) -> PanoramaBackend:
    """A backend configured by environment variables (for a wrap given as ``module:callable``).

    ``PANOPIPE_PANORAMA_DEVICES``: comma-separated devices, names or ``id:<device id>``
    (default ``local-device-1``); ``PANOPIPE_PANORAMA_REGION`` (default ``AWS_REGION``,
    ``AWS_DEFAULT_REGION``, us-east-1); ``PANOPIPE_PANORAMA_ACCOUNT`` (default moto's account);
    ``PANOPIPE_PANORAMA_DESCRIBES``: one count for every :class:`Progress` field, or three,
    ``registration,pending,in_progress``.
    """
    env = os.environ if environ is None else environ
    devices: list[dict[str, str]] = []
    for item in (env.get("PANOPIPE_PANORAMA_DEVICES") or "local-device-1").split(","):
        item = item.strip()
        if item:
            devices.append({"id": item[3:]} if item.startswith("id:") else {"name": item})
    region = env.get("PANOPIPE_PANORAMA_REGION") or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")
    counts = [int(n) for n in (env.get("PANOPIPE_PANORAMA_DESCRIBES") or "").split(",") if n.strip()]
    if len(counts) not in (0, 1, 3):
        raise ValueError("PANOPIPE_PANORAMA_DESCRIBES: one count, or registration,pending,in_progress")
    progress = Progress(*(counts * 3 if len(counts) == 1 else counts))
    return PanoramaBackend(
        env.get("PANOPIPE_PANORAMA_ACCOUNT") or DEFAULT_ACCOUNT_ID,
        region or DEFAULT_REGION,
        progress=progress,
        devices=devices,
    )


_wrapped: list[PanoramaBackend] = []


def wrap(moto_app: WSGIApp) -> WSGIApp:
    """``--wrap local_aws.panorama:wrap``: the service on moto's port, configured from the environment."""
    backend = backend_from_environment()
    _wrapped[:] = [backend]
    return middleware_for(backend)(moto_app)


def wrapped_backend() -> PanoramaBackend | None:
    """The backend the last :func:`wrap` call created (e.g. to reset it with the emulator)."""
    return _wrapped[0] if _wrapped else None


def moto_app_with_panorama(backend: PanoramaBackend) -> WSGIApp:
    """Moto's server app with this service mounted on the same port (and its CloudFormation model)."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    return middleware_for(backend)(DomainDispatcherApplication(create_backend_app))


def request_failed_deployments(endpoint_url: str, device: str, count: int = 1, reason: str | None = None) -> int:
    """Ask a running local service (at ``endpoint_url``) to fail the next ``count`` deployments on ``device``.

    Returns how many failures are pending for the device; raises ``urllib.error.HTTPError`` when the
    service refuses (e.g. an unknown device: 404).
    """
    body = json.dumps({"device": device, "count": count, **({"reason": reason} if reason else {})}).encode()
    request = urllib.request.Request(
        endpoint_url.rstrip("/") + FAIL_DEPLOYMENTS_PATH,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # the local emulator (loopback)
        return int(json.loads(response.read())["pendingFailures"])


__all__ = [
    "CONTROL_PREFIX",
    "FAIL_DEPLOYMENTS_PATH",
    "MAX_VERSIONS_PER_PACKAGE",
    "OPERATIONS",
    "MotoS3Store",
    "PanoramaApp",
    "PanoramaBackend",
    "PanoramaPackage",
    "Progress",
    "S3ClientStore",
    "backend_from_environment",
    "device_id_for_name",
    "install_cloudformation_model",
    "is_panorama_request",
    "middleware_for",
    "moto_app_with_panorama",
    "panorama_middleware",
    "panorama_wsgi_app",
    "request_failed_deployments",
    "signing_service",
    "wrap",
    "wrapped_backend",
]
