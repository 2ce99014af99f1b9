"""The run trigger: S3 and Step Functions in moto (a one-state Pass machine stands in for the pipeline)."""

from __future__ import annotations

import datetime
import json
from typing import Any

import boto3
import moto.s3.models
import pytest
from botocore.stub import Stubber

from lambda_handlers import settings as cfg
from lambda_handlers import trigger
from lambda_handlers.aws import clients
from lambda_handlers.domain import DEFAULT_DATASET_PREFIX
from lambda_handlers.errors import Throttled
from lambda_handlers.names import execution_name
from lambda_handlers.settings import StepSettings

DATA = "aws-panorama-panopipe-dev-data-123456789012-us-east-1"


@pytest.fixture
def machine(aws: None, settings: StepSettings, monkeypatch: pytest.MonkeyPatch) -> str:
    sfn = boto3.client("stepfunctions", region_name="us-east-1")
    arn = sfn.create_state_machine(
        name="panopipe-dev-pipeline",
        definition=json.dumps({"StartAt": "Run", "States": {"Run": {"Type": "Pass", "End": True}}}),
        roleArn="arn:aws:iam::123456789012:role/panopipe-dev-pipeline",
    )["stateMachineArn"]
    monkeypatch.setenv(cfg.STATE_MACHINE_ARN, arn)
    monkeypatch.setenv(cfg.DATA_BUCKET, DATA)
    return str(arn)


@pytest.fixture
def s3(machine: str) -> Any:
    client = boto3.client("s3", region_name="us-east-1")
    client.create_bucket(Bucket=DATA)
    client.put_bucket_versioning(Bucket=DATA, VersioningConfiguration={"Status": "Enabled"})
    return client


def _executions(machine: str) -> list[dict[str, Any]]:
    sfn = boto3.client("stepfunctions", region_name="us-east-1")
    listed = sfn.list_executions(stateMachineArn=machine)["executions"]
    return [sfn.describe_execution(executionArn=e["executionArn"]) for e in listed]


def _created(key: str, version: str | None = None, etag: str = "0123abcd", bucket: str = DATA) -> dict[str, Any]:
    item: dict[str, Any] = {"key": key, "size": 0, "etag": etag, "sequencer": "0064D3901D00059242"}
    if version:
        item["version-id"] = version
    return {
        "version": "0",
        "id": "c9888434-815d-c6f4-9fc2-4dd7bdeccaaf",
        "detail-type": "Object Created",
        "source": "aws.s3",
        "account": "123456789012",
        "time": "2026-05-01T00:00:00Z",
        "region": "us-east-1",
        "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {
            "version": "0",
            "bucket": {"name": bucket},
            "object": item,
            "request-id": "XRRTKJXSZQCWNQR1",
            "requester": "123456789012",
            "reason": "PutObject",
        },
    }


def test_a_marker_starts_one_run_named_after_the_data_set_version(s3: Any, machine: str) -> None:
    version = s3.put_object(Bucket=DATA, Key="datasets/people/_READY", Body=b"")["VersionId"]
    event = _created("datasets/people/_READY", version)

    first = trigger.trigger(event)
    second = trigger.trigger(event)

    name = execution_name(DATA, "datasets/people/", version)
    assert first["started"] is True and first["name"] == name
    assert first["dataset"] == f"s3://{DATA}/datasets/people/"
    assert second["started"] is False and second["name"] == name
    (execution,) = _executions(machine)
    assert execution["name"] == name
    assert json.loads(execution["input"]) == {"dataset": f"s3://{DATA}/datasets/people/"}


def test_a_marked_folder_with_a_manifest_starts_a_manifest_run(s3: Any, machine: str) -> None:
    s3.put_object(Bucket=DATA, Key="datasets/labelled/train.manifest", Body=b'{"source-ref": "s3://x/1.jpg"}')
    version = s3.put_object(Bucket=DATA, Key="datasets/labelled/_READY", Body=b"")["VersionId"]

    started = trigger.trigger(_created("datasets/labelled/_READY", version))

    assert started["dataset"] == f"s3://{DATA}/datasets/labelled/train.manifest"
    (execution,) = _executions(machine)
    assert json.loads(execution["input"]) == {"dataset": f"s3://{DATA}/datasets/labelled/train.manifest"}


def test_a_new_version_of_the_marker_starts_a_new_run(s3: Any, machine: str) -> None:
    names = set()
    for _ in range(2):
        version = s3.put_object(Bucket=DATA, Key="datasets/people/_READY", Body=b"")["VersionId"]
        names.add(trigger.trigger(_created("datasets/people/_READY", version))["name"])
    assert len(names) == 2 and len(_executions(machine)) == 2


@pytest.mark.parametrize(
    ("key", "bucket", "reason"),
    [
        ("datasets/people/train/img-0001.jpg", DATA, "not a data set marker"),
        ("datasets/people/_READY.txt", DATA, "not a data set marker"),
        ("_READY", DATA, "not a data set marker"),
        ("datasets/people/_READY", "aws-panorama-some-other-bucket", "not the data bucket"),
    ],
)
def test_other_objects_are_ignored(s3: Any, machine: str, key: str, bucket: str, reason: str) -> None:
    result = trigger.trigger(_created(key, "v1", bucket=bucket))
    assert result["started"] is False and reason in result["reason"]
    assert _executions(machine) == []


def test_an_unrelated_event_is_ignored(machine: str) -> None:
    result = trigger.trigger({"detail-type": "Object Deleted", "source": "aws.s3", "detail": {}})
    assert result == {"started": False, "reason": "neither an S3 Object Created nor a scheduled event"}


def _put_at(s3: Any, monkeypatch: pytest.MonkeyPatch, key: str, minute: int) -> str:
    moment = datetime.datetime(2026, 5, 1, 12, minute, 0)
    monkeypatch.setattr(moto.s3.models, "utcnow", lambda: moment)
    return str(s3.put_object(Bucket=DATA, Key=key, Body=b"")["VersionId"])


def test_the_schedule_starts_the_newest_marked_data_set_once(
    s3: Any, machine: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _put_at(s3, monkeypatch, "datasets/zebra/_READY", 1)
    newest = _put_at(s3, monkeypatch, "datasets/alpha/_READY", 5)
    _put_at(s3, monkeypatch, "datasets/beta/images/cat.jpg", 9)  # newer, but not a marker
    _put_at(s3, monkeypatch, "elsewhere/gamma/_READY", 9)  # newer, but outside the prefix
    scheduled = {"schedule": {"prefix": "datasets/"}}

    first = trigger.trigger(scheduled)
    second = trigger.trigger(scheduled)
    from_the_marker_event = trigger.trigger(_created("datasets/alpha/_READY", newest))

    assert first["started"] is True and first["name"] == execution_name(DATA, "datasets/alpha/", newest)
    assert second["started"] is False and from_the_marker_event["started"] is False
    assert [e["name"] for e in _executions(machine)] == [first["name"]]


def test_a_bare_scheduled_event_uses_the_default_prefix(s3: Any, machine: str) -> None:
    version = s3.put_object(Bucket=DATA, Key=f"{DEFAULT_DATASET_PREFIX}people/_READY", Body=b"")["VersionId"]
    result = trigger.trigger({"detail-type": "Scheduled Event", "source": "aws.events", "detail": {}})
    assert result["name"] == execution_name(DATA, f"{DEFAULT_DATASET_PREFIX}people/", version)


def test_the_schedule_without_any_marker_starts_nothing(s3: Any, machine: str) -> None:
    s3.put_object(Bucket=DATA, Key="datasets/people/train/img-0001.jpg", Body=b"jpg")
    result = trigger.trigger({"schedule": {"prefix": "datasets/"}})
    assert result == {"started": False, "reason": f"no _READY marker under s3://{DATA}/datasets/"}
    assert _executions(machine) == []


def test_an_unversioned_bucket_is_identified_by_the_etag_on_both_paths(machine: str) -> None:
    client = boto3.client("s3", region_name="us-east-1")
    client.create_bucket(Bucket=DATA)
    etag = client.put_object(Bucket=DATA, Key="datasets/people/_READY", Body=b"v1")["ETag"].strip('"')

    by_event = trigger.trigger(_created("datasets/people/_READY", etag=etag))
    by_schedule = trigger.trigger({"schedule": {"prefix": "datasets/"}})

    assert by_event["started"] is True and by_event["name"] == execution_name(DATA, "datasets/people/", etag)
    assert by_schedule["started"] is False and by_schedule["name"] == by_event["name"]


def test_throttling_becomes_throttled(s3: Any, machine: str) -> None:
    s3.put_object(Bucket=DATA, Key="datasets/people/_READY", Body=b"")
    with Stubber(clients.stepfunctions()) as stubber:
        stubber.add_client_error("describe_execution", "ThrottlingException", "Rate exceeded", 400)
        with pytest.raises(Throttled, match="DescribeExecution throttled"):
            trigger.trigger(_created("datasets/people/_READY", "v1"))


# --- malformed and hostile events: logged and ignored, never a crash ---------------------------------


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (None, "the event is not a JSON object"),
        ([], "the event is not a JSON object"),
        ("Object Created", "the event is not a JSON object"),
        ({**_created("datasets/a/_READY", "v1"), "detail": "x"}, "malformed S3 event: detail is not an object"),
        (
            {**_created("datasets/a/_READY", "v1"), "detail": {"bucket": [], "object": {"key": "k"}}},
            "malformed S3 event: detail.bucket.name is not a string",
        ),
        (
            {**_created("datasets/a/_READY", "v1"), "detail": {"bucket": {"name": DATA}, "object": None}},
            "malformed S3 event: detail.object.key is not a string",
        ),
        (
            {**_created("datasets/a/_READY", "v1"), "detail": {"bucket": {"name": DATA}, "object": {"key": 7}}},
            "malformed S3 event: detail.object.key is not a string",
        ),
        (
            {
                **_created("datasets/a/_READY"),
                "detail": {"bucket": {"name": DATA}, "object": {"key": "datasets/a/_READY", "etag": 5}},
            },
            "malformed S3 event: detail.object.etag is not a string",
        ),
        ({"schedule": "datasets/"}, "schedule = 'datasets/': not an object"),
        ({"schedule": {"prefix": 3}}, "schedule.prefix = 3: not a data set prefix (folders ending in /)"),
        (
            {"schedule": {"prefix": "datasets"}},
            "schedule.prefix = 'datasets': not a data set prefix (folders ending in /)",
        ),
        ({"schedule": {"prefix": "other/"}}, "schedule.prefix: not under the data set prefix datasets/ (other/)"),
        (
            {"schedule": {"prefix": "datasets/../secrets/"}},
            "schedule.prefix: the key holds '..' (datasets/../secrets/)",
        ),
    ],
)
def test_a_malformed_event_is_ignored_with_its_reason(machine: str, event: Any, reason: str) -> None:
    assert trigger.trigger(event) == {"started": False, "reason": reason}
    assert _executions(machine) == []


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("elsewhere/people/_READY", "not under the data set prefix datasets/ (elsewhere/people/)"),
        ("datasets/../people/_READY", "the key holds '..' (datasets/../people/)"),
        ("datasets/a/../../b/_READY", "the key holds '..' (datasets/a/../../b/)"),
    ],
)
def test_markers_outside_the_prefix_or_climbing_out_of_it_start_nothing(
    s3: Any, machine: str, key: str, reason: str
) -> None:
    assert trigger.trigger(_created(key, "v1")) == {"started": False, "reason": reason}
    assert _executions(machine) == []


def test_a_malformed_event_with_a_lambda_context_is_logged_not_raised(machine: str) -> None:
    class Context:
        function_name, memory_limit_in_mb, aws_request_id = "panopipe-dev-Trigger", 256, "r-1"
        invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:panopipe-dev-Trigger"

    for event in (None, [1, 2], "text", {"id": 5}):
        assert trigger.trigger(event, Context())["started"] is False
