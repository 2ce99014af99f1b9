"""boto3 clients of the AWS services the handlers call, created lazily and shared per process.

Panorama has its own module (``panorama.py``) because its API model is carried with the code.
The return types come from the ``mypy-boto3-*`` stubs (a development dependency, for mypy only).
boto3 is imported on first use: the step specs import the handler modules at synth time, which
has no use for it (in Lambda the first call pays what the import would have).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sagemaker import SageMakerClient
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_stepfunctions import SFNClient

_clients: dict[str, Any] = {}


def _client(service: str) -> Any:
    """The shared client for ``service`` (endpoint from AWS_ENDPOINT_URL[_<SERVICE>] if set)."""
    if service not in _clients:
        import boto3

        _clients[service] = boto3.client(service)
    return _clients[service]


def s3() -> S3Client:
    """Amazon S3."""
    return cast("S3Client", _client("s3"))


def sagemaker() -> SageMakerClient:
    """Amazon SageMaker (training and compilation jobs)."""
    return cast("SageMakerClient", _client("sagemaker"))


def sns() -> SNSClient:
    """Amazon SNS (notifications)."""
    return cast("SNSClient", _client("sns"))


def stepfunctions() -> SFNClient:
    """AWS Step Functions (the trigger starts executions)."""
    return cast("SFNClient", _client("stepfunctions"))


def reset() -> None:
    """Forget every client (tests: a new mocked account needs new clients)."""
    _clients.clear()
