"""What an AWS error means for the pipeline: one reading of botocore's ``ClientError``.

The codes come from the services' models and from what the services answer today (which is not
always what the model declares: SageMaker answers an unknown job name with ValidationException).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from botocore.exceptions import ClientError

#: HeadObject answers a bare 404; GetObject NoSuchKey.
S3_NOT_FOUND = frozenset({"404", "NoSuchKey", "NotFound"})
S3_NO_BUCKET = frozenset({"NoSuchBucket"})
S3_ACCESS_DENIED = frozenset({"AccessDenied", "403", "Forbidden"})
#: DescribeTrainingJob / DescribeCompilationJob of an unknown name: the model declares
#: ResourceNotFound, the service answers ValidationException.
SAGEMAKER_NOT_FOUND = frozenset({"ResourceNotFound", "ValidationException"})
#: Create*Job with a name that exists.
ALREADY_EXISTS = frozenset({"ResourceInUse"})

THROTTLING = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "SlowDown",
        "ProvisionedThroughputExceededException",
    }
)
SERVER_SIDE = frozenset({"InternalServerException", "InternalFailure", "ServiceUnavailable", "InternalError"})


def error_code(error: ClientError) -> str:
    """The error's code (``Error.Code``), or "" when the response has none."""
    return str(error.response.get("Error", {}).get("Code", ""))


def http_status(error: ClientError) -> int:
    """The HTTP status of the failed call (0 when unknown)."""
    return int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def retried(error: ClientError) -> bool:
    """Whether the state machine retries a step that met ``error``: throttling or a server-side fault."""
    code, status = error_code(error), http_status(error)
    return code in THROTTLING or code in SERVER_SIDE or status == 429 or status >= 500
