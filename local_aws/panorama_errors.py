"""The local Panorama service's errors, named and shaped like the exceptions of Panorama's API model.

A boto3 client raises the modeled exception class only when the error code, HTTP status and members
match the model (``lambda_handlers/botocore_data``), so each class here carries all three;
``panorama_protocol.serialize_error`` writes them. The pipeline's handlers branch on these codes
(e.g. ConflictException for a version in use), so they must be the real service's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar


class PanoramaError(Exception):
    """An answer of the service that is an error: ``code`` names the model's exception shape."""

    code: ClassVar[str] = "InternalServerException"
    status: ClassVar[int] = 500

    def __init__(self, message: str, **members: Any) -> None:
        super().__init__(message)
        self.message = message
        self.members = members


class InternalServerException(PanoramaError):
    """A fault of the service itself."""


class ValidationException(PanoramaError):
    """The request breaks a rule of the API or of Panorama's documents (HTTP 400)."""

    code = "ValidationException"
    status = 400

    def __init__(
        self,
        message: str,
        *,
        reason: str = "OTHER",
        fields: Iterable[tuple[str, str]] = (),
        arguments: Mapping[str, str] | None = None,
    ) -> None:
        members: dict[str, Any] = {"Reason": reason}
        listed = [{"Name": name, "Message": text} for name, text in fields]
        if listed:
            members["Fields"] = listed
        if arguments:
            members["ErrorArguments"] = [{"Name": k, "Value": v} for k, v in arguments.items()]
        super().__init__(message, **members)


class ResourceNotFoundException(PanoramaError):
    """No resource with that id (HTTP 404)."""

    code = "ResourceNotFoundException"
    status = 404

    def __init__(self, message: str, resource_id: str, resource_type: str) -> None:
        super().__init__(message, ResourceId=resource_id, ResourceType=resource_type)


class ConflictException(PanoramaError):
    """The resource exists already, or is in a state that forbids the request (HTTP 409)."""

    code = "ConflictException"
    status = 409

    def __init__(self, message: str, resource_id: str, resource_type: str) -> None:
        super().__init__(message, ResourceId=resource_id, ResourceType=resource_type)


class ServiceQuotaExceededException(PanoramaError):
    """A quota of the service would be exceeded (HTTP 402)."""

    code = "ServiceQuotaExceededException"
    status = 402

    def __init__(self, message: str, quota_code: str, resource_id: str, resource_type: str) -> None:
        super().__init__(
            message, QuotaCode=quota_code, ServiceCode="panorama", ResourceId=resource_id, ResourceType=resource_type
        )
