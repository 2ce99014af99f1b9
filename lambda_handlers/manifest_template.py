"""CloudFormation custom resource: store the application's manifest template in the artifacts bucket.

A plain Python function answering CloudFormation itself (no Node.js provider framework, so no
extra functions to deploy). Create and Update write a new object version; Delete keeps every
version, like all artifacts. The event is read with Powertools' ``CloudFormationCustomResourceEvent``.
"""

from __future__ import annotations

import json
import urllib.request
from typing import TYPE_CHECKING, Any

from lambda_handlers.aws import clients
from lambda_handlers.step import lambda_entry, logger

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.data_classes import CloudFormationCustomResourceEvent

#: Where a custom resource request carries its id (the logs' correlation id).
REQUEST_ID_PATH = "RequestId"


def store(bucket: str, key: str, body: str) -> dict[str, str]:
    """Write ``body`` as JSON; the bucket's default KMS encryption applies."""
    response = clients.s3().put_object(
        Bucket=bucket, Key=key, Body=body.encode("utf-8"), ContentType="application/json"
    )
    return {"Bucket": bucket, "Key": key, "VersionId": response.get("VersionId", "")}


@lambda_entry(REQUEST_ID_PATH)
def on_event(raw: dict[str, Any]) -> None:
    """Do the request, then always answer CloudFormation (or it waits an hour)."""
    from aws_lambda_powertools.utilities.data_classes import CloudFormationCustomResourceEvent  # see trigger.py

    event = CloudFormationCustomResourceEvent(raw)
    props = event.resource_properties
    physical_id = event.physical_resource_id or f"s3://{props.get('Bucket')}/{props.get('Key')}"
    status, reason, data = "SUCCESS", "", {}
    try:
        if event.request_type in ("Create", "Update"):
            data = store(props["Bucket"], props["Key"], props["Body"])
            physical_id = f"s3://{props['Bucket']}/{props['Key']}"
            logger.info("manifest template stored", extra={"location": physical_id, "version": data["VersionId"]})
    except Exception as error:  # every failure must reach CloudFormation, with its reason
        logger.exception("manifest template request failed")
        status, reason = "FAILED", f"{type(error).__name__}: {error}"
    respond(event, status, reason, physical_id, data)


def respond(
    event: CloudFormationCustomResourceEvent, status: str, reason: str, physical_id: str, data: dict[str, str]
) -> None:
    """PUT the result to the pre-signed ResponseURL, as the custom resource protocol requires."""
    body = json.dumps(
        {
            "Status": status,
            "Reason": (reason or "see the function's log")[:1000],
            "PhysicalResourceId": physical_id,
            "StackId": event.stack_id,
            "RequestId": event.request_id,
            "LogicalResourceId": event.logical_resource_id,
            "Data": data,
        }
    ).encode("utf-8")
    request = urllib.request.Request(
        event.response_url, data=body, method="PUT", headers={"Content-Type": "", "Content-Length": str(len(body))}
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # CloudFormation's pre-signed URL
        logger.info("CloudFormation answered", extra={"status": response.status})
