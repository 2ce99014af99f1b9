"""The manifest-template custom resource against moto's S3, answering a local ResponseURL."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import boto3
import pytest

from lambda_handlers import manifest_template
from tests.handlers.conftest import REGION

BUCKET = "aws-panorama-panopipe-dev-artifacts-123456789012-us-east-1"


@pytest.fixture
def responses() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A loopback HTTP server standing in for CloudFormation's pre-signed response URL."""
    received: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/response", received
    server.shutdown()


@pytest.fixture
def s3(aws: None) -> Any:
    """A versioned artifacts bucket in moto; the handler's shared S3 client is created inside it."""
    client = boto3.client("s3", region_name=REGION)
    client.create_bucket(Bucket=BUCKET)
    client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    return client


def _event(url: str, request: str, body: str = '{"spec": {}}', bucket: str = BUCKET) -> dict[str, Any]:
    return {
        "RequestType": request,
        "ResponseURL": url,
        "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/app/1",
        "RequestId": "req-1",
        "LogicalResourceId": "ManifestTemplate",
        "ResourceProperties": {"Bucket": bucket, "Key": "panorama/application-manifest.json", "Body": body},
        **({"PhysicalResourceId": f"s3://{bucket}/panorama/application-manifest.json"} if request != "Create" else {}),
    }


def test_create_then_update_write_new_versions(s3: Any, responses: tuple[str, list[dict[str, Any]]]) -> None:
    url, received = responses
    manifest_template.on_event(_event(url, "Create", '{"v": 1}'))
    manifest_template.on_event(_event(url, "Update", '{"v": 2}'))
    assert [r["Status"] for r in received] == ["SUCCESS", "SUCCESS"]
    assert received[0]["PhysicalResourceId"] == f"s3://{BUCKET}/panorama/application-manifest.json"
    assert received[1]["Data"]["VersionId"]
    body = s3.get_object(Bucket=BUCKET, Key="panorama/application-manifest.json")["Body"].read()
    assert json.loads(body) == {"v": 2}
    versions = s3.list_object_versions(Bucket=BUCKET, Prefix="panorama/")["Versions"]
    assert len(versions) == 2


def test_delete_keeps_the_object(s3: Any, responses: tuple[str, list[dict[str, Any]]]) -> None:
    url, received = responses
    manifest_template.on_event(_event(url, "Create"))
    manifest_template.on_event(_event(url, "Delete"))
    assert [r["Status"] for r in received] == ["SUCCESS", "SUCCESS"]
    assert s3.get_object(Bucket=BUCKET, Key="panorama/application-manifest.json")


def test_failure_is_reported_to_cloudformation_with_the_reason(
    s3: Any, responses: tuple[str, list[dict[str, Any]]]
) -> None:
    url, received = responses
    manifest_template.on_event(_event(url, "Create", bucket="aws-panorama-missing-bucket"))
    (response,) = received
    assert response["Status"] == "FAILED"
    assert "NoSuchBucket" in response["Reason"]
    assert response["RequestId"] == "req-1" and response["LogicalResourceId"] == "ManifestTemplate"
