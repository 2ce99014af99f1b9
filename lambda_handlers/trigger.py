"""Start one pipeline run per version of a data set: on its ``_READY`` marker, or on a schedule.

A data set is complete when a ``_READY`` object lands in its directory of the data bucket. The
run's name derives from the bucket, the directory (with its trailing ``/``) and the marker's
VersionId (its ETag in an unversioned bucket), so a repeated event, a retried invocation or the
schedule finding the same marker again never start a second run (:func:`names.execution_name`).

Events:

- S3 "Object Created" through EventBridge (read with Powertools' ``S3EventBridgeNotificationEvent``):
  ``detail.bucket.name``, ``detail.object.key`` / ``version-id`` / ``etag``. Other keys, and other
  buckets than DATA_BUCKET, are ignored (logged).
- The schedule rule's constant input ``{"schedule": {"prefix": "datasets/"}}`` (or a bare
  "Scheduled Event", which uses the default prefix): the newest marker under the prefix.

Returns ``{"started": bool, "name", "execution_arn", "dataset"}`` or ``{"started": False, "reason"}``.
Throttling / 5xx become Throttled / TransientError, as in every step (``step.translate``), and
EventBridge retries the invocation.

Environment: DATA_BUCKET, STATE_MACHINE_ARN. IAM: s3:ListBucketVersions on the data bucket,
states:StartExecution on the state machine, states:DescribeExecution on its executions.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from lambda_handlers import settings
from lambda_handlers.aws import clients
from lambda_handlers.aws.client_errors import S3_NOT_FOUND, error_code
from lambda_handlers.domain import DATASET_PREFIX_PATTERN, DEFAULT_DATASET_PREFIX, READY_MARKER, bounded, shown
from lambda_handlers.names import execution_name
from lambda_handlers.step import lambda_entry, logger

#: A marked folder holding this file is a data set in manifest form (validation.manifest beside it).
MANIFEST_NAME = "train.manifest"

#: Where an EventBridge event carries its id (the logs' correlation id).
EVENT_ID_PATH = "id"

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.data_classes import S3EventBridgeNotificationEvent

Result = dict[str, Any]


def marker_prefix(key: str) -> str | None:
    """The data set directory (``a/b/``) of a marker key ``a/b/_READY``; None for any other key."""
    directory, _, name = key.rpartition("/")
    if name != READY_MARKER or not directory:
        return None
    return f"{directory}/"


def _version(version_id: Any, etag: Any) -> str:
    """The marker's identity: its VersionId, or its ETag in an unversioned bucket ("null" id)."""
    if version_id and version_id != "null":
        return str(version_id)
    return str(etag or "").strip('"')


def start(bucket: str, prefix: str, version: str) -> Result:
    """Start the run of one data set version, unless a run of that name exists already."""
    name = execution_name(bucket, prefix, version)
    machine = settings.env(settings.STATE_MACHINE_ARN)
    sfn = clients.stepfunctions()
    dataset = f"s3://{bucket}/{prefix}"
    if _exists(bucket, f"{prefix}{MANIFEST_NAME}"):  # the manifest form of a data set
        dataset += MANIFEST_NAME
    execution_arn = f"{machine.replace(':stateMachine:', ':execution:', 1)}:{name}"
    try:
        sfn.describe_execution(executionArn=execution_arn)
    except sfn.exceptions.ExecutionDoesNotExist:
        pass
    else:
        return _not_started(name, execution_arn, dataset)
    try:
        response = sfn.start_execution(stateMachineArn=machine, name=name, input=json.dumps({"dataset": dataset}))
    except sfn.exceptions.ExecutionAlreadyExists:
        return _not_started(name, execution_arn, dataset)
    logger.info("run started", extra={"execution": name, "dataset": dataset})
    return {"started": True, "name": name, "execution_arn": response["executionArn"], "dataset": dataset}


def _exists(bucket: str, key: str) -> bool:
    """Whether ``key`` exists (HeadObject; the trigger may list the data prefix, so a miss is a 404)."""
    try:
        clients.s3().head_object(Bucket=bucket, Key=key)
    except ClientError as error:
        if error_code(error) in S3_NOT_FOUND:
            return False
        raise
    return True


def _not_started(name: str, execution_arn: str, dataset: str) -> Result:
    logger.info("run exists already", extra={"execution": name, "dataset": dataset})
    return {
        "started": False,
        "name": name,
        "execution_arn": execution_arn,
        "dataset": dataset,
        "reason": "this data set version has a run already",
    }


def _ignored(reason: str, **details: Any) -> Result:
    logger.info("event ignored", extra={"reason": reason, **details})
    return {"started": False, "reason": reason}


def _s3_event_problem(event: dict[str, Any]) -> str | None:
    """Why an "Object Created" event is not one S3 sends (its fields of the wrong type), or None."""
    detail = event.get("detail")
    if not isinstance(detail, dict):
        return "detail is not an object"
    bucket, item = detail.get("bucket"), detail.get("object")
    if not isinstance(bucket, dict) or not isinstance(bucket.get("name"), str):
        return "detail.bucket.name is not a string"
    if not isinstance(item, dict) or not isinstance(item.get("key"), str):
        return "detail.object.key is not a string"
    for field in ("version-id", "etag"):
        if item.get(field) is not None and not isinstance(item[field], str):
            return f"detail.object.{field} is not a string"
    return None


def _outside(prefix: str) -> str | None:
    """Why a data set directory is not one the pipeline runs, or None: under the configured prefix, no ``..``."""
    configured = settings.current().runs.dataset_prefix
    if ".." in prefix.split("/"):
        return f"the key holds '..' ({bounded(prefix, 200)})"
    if not prefix.startswith(configured):
        return f"not under the data set prefix {configured} ({bounded(prefix, 200)})"
    return None


def on_marker(event: S3EventBridgeNotificationEvent) -> Result:
    """An S3 Object Created event: start the data set's run if the object is its marker."""
    bucket = event.detail.bucket.name
    item = event.detail.object
    key = item.key
    prefix = marker_prefix(key)
    if prefix is None:
        return _ignored(f"not a data set marker (a {READY_MARKER} object under a prefix)", bucket=bucket, key=key)
    outside = _outside(prefix)
    if outside:
        return _ignored(outside, bucket=bucket, key=bounded(key, 200))
    data_bucket = settings.env(settings.DATA_BUCKET)
    if bucket != data_bucket:
        return _ignored(f"not the data bucket {data_bucket}", bucket=bucket, key=key)
    version = _version(item.get("version-id"), item.etag)
    if not version:
        return _ignored("the event names neither a version id nor an ETag", bucket=bucket, key=key)
    return start(bucket, prefix, version)


def newest_marker(bucket: str, prefix: str) -> tuple[str, str] | None:
    """Directory and version of the newest current ``_READY`` object under ``prefix``, if any.

    Listings give LastModified to the second: markers of the same second are ordered by key.
    """
    newest: tuple[Any, str, str] | None = None
    for page in clients.s3().get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Versions", []):
            directory = marker_prefix(item["Key"])
            if not item.get("IsLatest") or directory is None:
                continue
            if newest is None or (item["LastModified"], directory) > newest[:2]:
                newest = (item["LastModified"], directory, _version(item.get("VersionId"), item.get("ETag")))
    return (newest[1], newest[2]) if newest else None


def on_schedule(schedule: dict[str, Any]) -> Result:
    """A scheduled event: start the run of the newest marked data set under the schedule's prefix."""
    bucket, prefix = settings.env(settings.DATA_BUCKET), schedule.get("prefix", DEFAULT_DATASET_PREFIX)
    if not isinstance(prefix, str) or not re.match(DATASET_PREFIX_PATTERN, prefix):
        return _ignored(f"schedule.prefix = {shown(prefix)}: not a data set prefix (folders ending in /)")
    outside = _outside(prefix)
    if outside:
        return _ignored(f"schedule.prefix: {outside}")
    marker = newest_marker(bucket, prefix)
    if marker is None:
        return _ignored(f"no {READY_MARKER} marker under s3://{bucket}/{prefix}")
    directory, version = marker
    return start(bucket, directory, version)


@lambda_entry(EVENT_ID_PATH)
def trigger(event: Any) -> Result:
    """Lambda handler of the EventBridge rules (not a state machine step).

    A malformed event is logged and ignored: no crash, and no retry by EventBridge of what can never succeed.
    """
    if not isinstance(event, dict):
        return _ignored("the event is not a JSON object", event_type=type(event).__name__)
    if "schedule" in event or event.get("detail-type") == "Scheduled Event":
        schedule = event.get("schedule") or {}
        if not isinstance(schedule, dict):
            return _ignored(f"schedule = {shown(schedule)}: not an object")
        return on_schedule(schedule)
    if event.get("source") == "aws.s3" and event.get("detail-type") == "Object Created":
        problem = _s3_event_problem(event)
        if problem:
            return _ignored(f"malformed S3 event: {problem}")
        # Imported here: the data classes package loads every event type (~60 ms), which synth
        # (it imports this module through the step specs) has no use for.
        from aws_lambda_powertools.utilities.data_classes import S3EventBridgeNotificationEvent

        return on_marker(S3EventBridgeNotificationEvent(event))
    return _ignored("neither an S3 Object Created nor a scheduled event", detail_type=event.get("detail-type"))
