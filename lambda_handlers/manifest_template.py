"""CloudFormation custom resource: store the application's manifest template in the artifacts bucket.

Plain Python (no Node.js provider framework), so the same template deploys in the local emulator.
Create and Update write a new object version; Delete keeps every version, like all artifacts.
"""

from __future__ import annotations

import json
import logging
import urllib.request
from typing import Any

import boto3

LOG = logging.getLogger(__name__)
LOG.setLevel(logging.INFO)

_s3: Any = None


def _client() -> Any:
    """The S3 client, created on first use (cold starts that only delete pay nothing)."""
    global _s3
    if _s3 is None:
        _s3 = boto3.client("s3")
    return _s3


def store(bucket: str, key: str, body: str) -> dict[str, str]:
    """Write ``body`` as JSON; the bucket's default KMS encryption applies."""
    response = _client().put_object(Bucket=bucket, Key=key, Body=body.encode("utf-8"), ContentType="application/json")
    return {"Bucket": bucket, "Key": key, "VersionId": response.get("VersionId", "")}


def handler(event: dict[str, Any], context: Any) -> None:
    """Entry point: do the request, then always answer CloudFormation (or it waits an hour)."""
    props = event.get("ResourceProperties", {})
    physical_id = event.get("PhysicalResourceId") or f"s3://{props.get('Bucket')}/{props.get('Key')}"
    status, reason, data = "SUCCESS", "", {}
    try:
        if event["RequestType"] in ("Create", "Update"):
            data = store(props["Bucket"], props["Key"], props["Body"])
            physical_id = f"s3://{props['Bucket']}/{props['Key']}"
            LOG.info("stored %s version %s", physical_id, data["VersionId"])
    except Exception as error:  # every failure must reach CloudFormation, with its reason
        LOG.exception("manifest template request failed")
        status, reason = "FAILED", f"{type(error).__name__}: {error}"
    respond(event, status, reason, physical_id, data, getattr(context, "log_stream_name", ""))


def respond(
    event: dict[str, Any], status: str, reason: str, physical_id: str, data: dict[str, str], log_stream: str
) -> None:
    """PUT the result to the pre-signed ResponseURL, as the custom resource protocol requires."""
    body = json.dumps(
        {
            "Status": status,
            "Reason": (reason or f"see log stream {log_stream}")[:1000],
            "PhysicalResourceId": physical_id,
            "StackId": event["StackId"],
            "RequestId": event["RequestId"],
            "LogicalResourceId": event["LogicalResourceId"],
            "Data": data,
        }
    ).encode("utf-8")
    request = urllib.request.Request(
        event["ResponseURL"], data=body, method="PUT", headers={"Content-Type": "", "Content-Length": str(len(body))}
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # CloudFormation's pre-signed URL
        LOG.info("CloudFormation answered %s", response.status)
