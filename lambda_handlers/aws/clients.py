"""boto3 clients for the services moto implements, created lazily and shared per process.

Panorama has its own module (``panorama.py``) because its API model is carried with the code.
"""

from __future__ import annotations

from typing import Any

import boto3

_clients: dict[str, Any] = {}


def client(service: str) -> Any:
    """The shared client for ``service`` (endpoint from AWS_ENDPOINT_URL[_<SERVICE>] if set)."""
    if service not in _clients:
        _clients[service] = boto3.client(service)
    return _clients[service]


def s3() -> Any:
    """Amazon S3."""
    return client("s3")


def sagemaker() -> Any:
    """Amazon SageMaker (training and compilation jobs)."""
    return client("sagemaker")


def sns() -> Any:
    """Amazon SNS (notifications)."""
    return client("sns")


def stepfunctions() -> Any:
    """AWS Step Functions (the trigger starts executions)."""
    return client("stepfunctions")


def reset() -> None:
    """Forget every client (tests: a new moto context needs new clients)."""
    _clients.clear()
