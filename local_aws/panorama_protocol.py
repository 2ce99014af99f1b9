"""Panorama's REST-JSON protocol, server side, driven by the carried API model.

Everything here comes from ``lambda_handlers/botocore_data`` (the model the pipeline's client uses):
routing from ``operations[*].http`` (method + ``requestUri`` with ``{params}``), request parsing by
each member's ``location`` (uri, querystring, header, body), request validation (botocore's own
``ParamValidator`` for required members, types, unknown members and minimums, plus the maximums,
patterns and enums that botocore leaves to the service), response serialization (rest-json:
timestamps as epoch seconds) and modeled errors (status from the error shape, ``x-amzn-ErrorType``,
a JSON body with ``Message`` and the shape's other members), so a boto3 client raises the modeled
exception class.

Why the service side validates: botocore checks only part of the model on the client (required
members, types, minimums); the real service refuses the rest (maximums, patterns, enums, unknown
members). A local service that skipped those checks would accept what AWS refuses.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any
from urllib.parse import unquote

import botocore.loaders
import botocore.model
from botocore.validate import ParamValidator

from lambda_handlers.aws.panorama import MODEL_DIR
from local_aws.panorama_errors import InternalServerException, PanoramaError, ValidationException

SERVICE = "panorama"
#: Longest value quoted back in a validation message (longer ones are named by their length).
_QUOTE_LIMIT = 64


class _UnknownOperation(PanoramaError):
    """No operation of the model has this method and path."""

    code = "UnknownOperationException"
    status = 404


class OperationNotImplemented(PanoramaError):
    """A modeled operation outside the subset the local service implements."""

    code = "NotImplementedException"
    status = 501


@cache
def _service_model() -> Any:
    """The carried Panorama model as a botocore ``ServiceModel`` (loaded once)."""
    loader = botocore.loaders.Loader(extra_search_paths=[str(MODEL_DIR)], include_default_search_paths=False)
    return botocore.model.ServiceModel(loader.load_service_model(SERVICE, "service-2"), service_name=SERVICE)


# --- routing ---------------------------------------------------------------------------------------

_PARAM = re.compile(r"\{([A-Za-z0-9_]+)(\+?)\}")


@dataclass(frozen=True)
class _Route:
    """One operation's method and path template, compiled two ways.

    ``strict`` matches the raw (still percent-encoded) path, where a parameter is one segment;
    ``lax`` matches an already decoded path, where an encoded ``/`` inside a parameter (the
    ``packageName/<name>`` form of a package id) can no longer be told apart from a separator.
    """

    operation: Any
    method: str
    strict: re.Pattern[str]
    lax: re.Pattern[str]
    query: tuple[tuple[str, str], ...]
    literal_segments: int


def _compile(path: str, lax: bool) -> re.Pattern[str]:
    pattern, position = "", 0
    for found in _PARAM.finditer(path):
        pattern += re.escape(path[position : found.start()])
        greedy = found.group(2) == "+"
        pattern += f"(?P<{found.group(1)}>{'.+' if greedy else ('.+?' if lax else '[^/]+')})"
        position = found.end()
    return re.compile("^" + pattern + re.escape(path[position:]) + "/?$")


@cache
def routes() -> tuple[_Route, ...]:
    """Every operation of the model, most specific path first."""
    table = []
    for name in _service_model().operation_names:
        operation = _service_model().operation_model(name)
        path, _, literal_query = operation.http["requestUri"].partition("?")
        query = tuple(
            (key, value) for key, _, value in (item.partition("=") for item in literal_query.split("&") if item)
        )
        literals = sum(1 for segment in path.split("/") if segment and not _PARAM.fullmatch(segment))
        table.append(
            _Route(operation, operation.http["method"], _compile(path, False), _compile(path, True), query, literals)
        )
    return tuple(sorted(table, key=lambda r: (-r.literal_segments, -len(r.query), r.operation.name)))


def match(
    method: str, raw_path: str | None, decoded_path: str, query: Mapping[str, list[str]]
) -> tuple[Any, dict[str, str]]:
    """The operation and its decoded path parameters; raises :class:`_UnknownOperation`."""
    for route in routes():
        if route.method != method or any(key not in query for key, _ in route.query):
            continue
        found = route.strict.match(raw_path) if raw_path is not None else route.lax.match(decoded_path)
        if found:
            params = found.groupdict()
            return route.operation, {k: unquote(v) if raw_path is not None else v for k, v in params.items()}
    raise _UnknownOperation(f"no Panorama operation answers {method} {decoded_path}")


# --- requests --------------------------------------------------------------------------------------


def _scalar(text: str, shape: Any) -> Any:
    """A uri/querystring/header string as the member's type (left as text when it is not one)."""
    kind = shape.type_name
    if kind in ("integer", "long"):
        return int(text) if re.fullmatch(r"-?[0-9]+", text) else text
    if kind in ("float", "double"):
        try:
            return float(text)
        except ValueError:
            return text
    if kind == "boolean":
        return {"true": True, "false": False}.get(text.lower(), text)
    if kind == "timestamp":
        try:
            return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return text
    return text


def _from_json(value: Any, shape: Any) -> Any:
    """A JSON body value as Python values of the member's type; unknown keys are kept (and reported)."""
    kind = shape.type_name
    if kind == "structure" and isinstance(value, dict):
        by_wire = {member.serialization.get("name", name): name for name, member in shape.members.items()}
        result = {}
        for key, item in value.items():
            name = by_wire.get(key)
            result[name or key] = _from_json(item, shape.members[name]) if name else item
        return result
    if kind == "list" and isinstance(value, list):
        return [_from_json(item, shape.member) for item in value]
    if kind == "map" and isinstance(value, dict):
        return {key: _from_json(item, shape.value) for key, item in value.items()}
    if kind == "timestamp" and isinstance(value, int | float) and not isinstance(value, bool):
        return dt.datetime.fromtimestamp(value, tz=dt.UTC)
    if kind == "blob" and isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except ValueError:
            return value
    return value


def parse_request(
    operation: Any,
    path_params: Mapping[str, str],
    query: Mapping[str, list[str]],
    headers: Mapping[str, str],
    body: bytes,
) -> dict[str, Any]:
    """The operation's input parameters from the HTTP request (not yet validated)."""
    shape = operation.input_shape
    if shape is None:
        return {}
    params: dict[str, Any] = {}
    body_members = {}
    lowered_headers = {key.lower(): value for key, value in headers.items()}
    for name, member in shape.members.items():
        location, wire = member.serialization.get("location"), member.serialization.get("name", name)
        if location == "uri" and wire in path_params:
            params[name] = _scalar(path_params[wire], member)
        elif location == "querystring" and wire in query:
            values = query[wire]
            params[name] = (
                [_scalar(v, member.member) for v in values]
                if member.type_name == "list"
                else _scalar(values[-1], member)
            )
        elif location == "header" and wire.lower() in lowered_headers:
            params[name] = _scalar(lowered_headers[wire.lower()], member)
        elif location is None:
            body_members[member.serialization.get("name", name)] = name
    payload_member = shape.serialization.get("payload")
    if payload_member:
        member = shape.members[payload_member]
        if body:
            params[payload_member] = body if member.type_name == "blob" else _decode_body(body, member)
        return params
    if not body.strip():
        return params
    document = _decode_body(body, shape)
    if not isinstance(document, dict):
        raise ValidationException("the request body must be a JSON object", reason="CANNOT_PARSE")
    unknown = sorted(key for key in document if key not in body_members)
    if unknown:
        raise ValidationException(
            f"unknown field(s) in the request body: {', '.join(unknown)}; {operation.name} accepts "
            f"{', '.join(sorted(body_members)) or 'no body fields'}",
            reason="FIELD_VALIDATION_FAILED",
            fields=[(key, "unknown field") for key in unknown],
        )
    params.update(_from_json(document, shape))
    return params


def _decode_body(body: bytes, shape: Any) -> Any:
    try:
        return _from_json(json.loads(body), shape)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValidationException(f"the request body is not valid JSON: {error}", reason="CANNOT_PARSE") from error


def _wire_path(parent: str, name: str, member: Any) -> str:
    """How validation messages name a member: its wire name (lower camel case in a body)."""
    wire = member.serialization.get("name") or (name[:1].lower() + name[1:])
    return f"{parent}.{wire}" if parent else wire


def _quote(value: Any) -> str:
    text = str(value)
    return f" '{text}'" if len(text) <= _QUOTE_LIMIT else ""


def _constraint_problems(value: Any, shape: Any, path: str = "") -> list[tuple[str, str]]:
    """(member path, message) for each maximum, minimum, pattern and enum that ``value`` breaks, AWS style."""
    problems: list[tuple[str, str]] = []
    kind, meta = shape.type_name, shape.metadata

    def failed(rule: str) -> None:
        problems.append((path, f"Value{_quote(value)} at '{path}' failed to satisfy constraint: {rule}"))

    if kind == "structure" and isinstance(value, dict):
        for name, member in shape.members.items():
            if value.get(name) is not None:
                problems += _constraint_problems(value[name], member, _wire_path(path, name, member))
    elif kind == "list" and isinstance(value, list):
        if "max" in meta and len(value) > meta["max"]:
            failed(f"Member must have length less than or equal to {meta['max']}")
        for index, item in enumerate(value):
            problems += _constraint_problems(item, shape.member, f"{path}.{index + 1}.member")
    elif kind == "map" and isinstance(value, dict):
        if "max" in meta and len(value) > meta["max"]:
            failed(f"Member must have length less than or equal to {meta['max']}")
        for key, item in value.items():
            problems += _constraint_problems(key, shape.key, f"{path}.key")
            problems += _constraint_problems(item, shape.value, f"{path}.{key}")
    elif kind == "string" and isinstance(value, str):
        if shape.enum and value not in shape.enum:
            failed(f"Member must satisfy enum value set: [{', '.join(shape.enum)}]")
        if "max" in meta and len(value) > meta["max"]:
            failed(f"Member must have length less than or equal to {meta['max']} (it has {len(value)})")
        if "min" in meta and len(value) < meta["min"]:
            failed(f"Member must have length greater than or equal to {meta['min']}")
        if "pattern" in meta and not re.search(meta["pattern"], value):
            failed(f"Member must satisfy regular expression pattern: {meta['pattern']}")
    elif kind in ("integer", "long", "float", "double") and isinstance(value, int | float):
        if "max" in meta and value > meta["max"]:
            failed(f"Member must have value less than or equal to {meta['max']}")
        if "min" in meta and value < meta["min"]:
            failed(f"Member must have value greater than or equal to {meta['min']}")
    return problems


def validate_request(operation: Any, params: dict[str, Any]) -> None:
    """Reject what the model does not allow, as the service does (ValidationException)."""
    shape = operation.input_shape
    if shape is None:
        return
    report = ParamValidator().validate(params, shape)
    if report.has_errors():
        raise ValidationException(
            f"Invalid {operation.name} request: {report.generate_report()}", reason="FIELD_VALIDATION_FAILED"
        )
    problems = _constraint_problems(params, shape)
    if problems:
        count = len(problems)
        raise ValidationException(
            f"{count} validation error{'s' if count > 1 else ''} detected: {'; '.join(m for _, m in problems)}",
            reason="FIELD_VALIDATION_FAILED",
            fields=problems,
        )


# --- responses -------------------------------------------------------------------------------------


def _to_json(value: Any, shape: Any) -> Any:
    kind = shape.type_name
    if kind == "structure":
        return {
            member.serialization.get("name", name): _to_json(value[name], member)
            for name, member in shape.members.items()
            if value.get(name) is not None and member.serialization.get("location") is None
        }
    if kind == "list":
        return [_to_json(item, shape.member) for item in value]
    if kind == "map":
        return {key: _to_json(item, shape.value) for key, item in value.items()}
    if kind == "timestamp":
        return _timestamp(value, shape.serialization.get("timestampFormat", "unixTimestamp"))
    if kind == "blob":
        return base64.b64encode(value).decode("ascii")
    return value


def _timestamp(value: dt.datetime, style: str) -> Any:
    moment = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
    if style == "iso8601":
        return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return round(moment.timestamp(), 3)


def _check_response(operation: Any, result: dict[str, Any], shape: Any) -> None:
    """Our own answers must follow the model too: a mismatch is a bug of the local service."""
    report = ParamValidator().validate(result, shape)
    problems = [report.generate_report()] if report.has_errors() else []
    problems += [message for _, message in _constraint_problems(result, shape)]
    if problems:
        raise InternalServerException(
            f"the local Panorama service built an invalid {operation.name} response: {'; '.join(problems)}"
        )


def serialize_response(operation: Any, result: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of a successful answer."""
    shape = operation.output_shape
    status = int(operation.http.get("responseCode", 200))
    if shape is None:
        return status, {"Content-Type": "application/json"}, b"{}"
    _check_response(operation, result, shape)
    headers = {"Content-Type": "application/json"}
    for name, member in shape.members.items():
        location = member.serialization.get("location")
        if location == "header" and result.get(name) is not None:
            headers[member.serialization.get("name", name)] = str(result[name])
        elif location == "statusCode" and result.get(name) is not None:
            status = int(result[name])
    return status, headers, json.dumps(_to_json(result, shape)).encode("utf-8")


def serialize_error(error: PanoramaError) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of an error: the modeled shape's status and members."""
    headers = {"Content-Type": "application/json", "x-amzn-ErrorType": error.code}
    body: dict[str, Any] = {"Message": error.message}
    status = error.status
    try:
        shape = _service_model().shape_for(error.code)
    except botocore.model.NoShapeFoundError:
        shape = None
    if shape is not None:
        status = int(shape.metadata.get("error", {}).get("httpStatusCode", status))
        body.update(_to_json({k: v for k, v in error.members.items() if k in shape.members}, shape))
    return status, headers, json.dumps(body).encode("utf-8")
