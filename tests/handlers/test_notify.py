"""The run report: SNS in moto, read back through a subscribed SQS queue."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from lambda_handlers import notify
from lambda_handlers import settings as cfg
from lambda_handlers.aws import clients
from lambda_handlers.errors import Throttled
from lambda_handlers.settings import StepSettings

RUN = "ds-people-0123456789ab"
PATCH = "a" * 64
CODE_PATCH = "c" * 64


@pytest.fixture
def inbox(aws: None, settings: StepSettings, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A topic in moto with a queue subscribed; returns a function reading the published messages."""
    sns = boto3.client("sns", region_name="us-east-1")
    sqs = boto3.client("sqs", region_name="us-east-1")
    topic = sns.create_topic(Name="panopipe-dev-runs")["TopicArn"]
    queue = sqs.create_queue(QueueName="inbox")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    monkeypatch.setenv(cfg.TOPIC_ARN, topic)

    def read() -> list[dict[str, Any]]:
        messages = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
        return [json.loads(m["Body"]) for m in messages]

    return read


def _state(**sections: Any) -> dict[str, Any]:
    return {
        "input": {"dataset": "s3://aws-panorama-data/datasets/people/"},
        "run": {"name": RUN, "started": "2026-05-01T00:00:00Z"},
        "source": {"kind": "dataset", "bucket": "aws-panorama-data", "prefix": "datasets/people/", "channels": {}},
        "model": {"s3_uri": "s3://aws-panorama-artifacts/runs/r/output/model.tar.gz"},
        "training": {
            "job_name": f"panopipe-dev-train-{RUN}",
            "status": "Completed",
            "metric": {"name": "validation:accuracy", "value": 0.93, "threshold": 0.8},
        },
        "compilation": {"job_name": f"panopipe-dev-compile-{RUN}", "status": "COMPLETED"},
        "code_package": {
            "package_id": "package-code",
            "package_name": "panopipe_dev_app",
            "package_version": "1.0",
            "patch_version": CODE_PATCH,
        },
        "package": {
            "package_name": "panopipe_dev_people_classifier",
            "package_version": "1.0",
            "patch_version": PATCH,
            "status": "SUCCEEDED",
            "deregistered": ["p0"],
        },
        **sections,
    }


def _devices(*statuses: tuple[str, str, str]) -> list[dict[str, Any]]:
    return [
        {
            "device": label,
            "device_id": f"device-{index}",
            "instance_id": f"ai-{index}",
            "replaced": None,
            "status": status,
            "status_description": description,
        }
        for index, (label, status, description) in enumerate(statuses, start=1)
    ]


def test_success_is_reported_with_jobs_metric_package_and_instances(inbox: Any) -> None:
    deployment = {"status": "SUCCEEDED", "devices": _devices(("lobby", "SUCCEEDED", "DEPLOYMENT_SUCCEEDED"))}

    result = notify.notify(_state(deployment=deployment))

    (published,) = inbox()
    assert published["Subject"] == f"[panopipe-dev] run {RUN} SUCCEEDED"
    body = published["Message"]
    for expected in (
        f"Run {RUN}: SUCCEEDED",
        "Source: data set s3://aws-panorama-data/datasets/people/",
        f"Training job: panopipe-dev-train-{RUN} (Completed)",
        "Metric: validation:accuracy = 0.93 (threshold 0.8)",
        f"Compilation job: panopipe-dev-compile-{RUN} (COMPLETED)",
        f"Model package: panopipe_dev_people_classifier version 1.0 patch {PATCH} (SUCCEEDED)",
        "deregistered old patches: p0",
        f"Code package: panopipe_dev_app version 1.0 patch {CODE_PATCH} (registered by panopipe package-app)",
        "Deployment: SUCCEEDED",
        "  - lobby (device-1): instance ai-1: SUCCEEDED - DEPLOYMENT_SUCCEEDED",
    ):
        assert expected in body
    assert "Error" not in body
    summary = result["summary"]
    assert summary["status"] == "SUCCEEDED" and summary["error"] is None
    assert summary["instances"] == {"lobby": "ai-1"} and summary["message_id"]
    assert summary["reason"] == (
        f"patch {PATCH[:12]} of panopipe_dev_people_classifier with patch {CODE_PATCH[:12]} of panopipe_dev_app "
        "runs on 1 device(s)"
    )


def test_a_caught_error_is_reported_with_the_step_and_the_lambda_message(inbox: Any) -> None:
    cause = {
        "errorMessage": "metric validation:accuracy = 0.51\nbelow threshold 0.8",
        "errorType": "MetricBelowThreshold",
        "stackTrace": ["..."],
    }
    state = _state(
        error={"Error": "MetricBelowThreshold", "Cause": json.dumps(cause)},
        failed_step="EvaluateGate",
    )
    del state["compilation"], state["package"]

    result = notify.notify(state)

    (published,) = inbox()
    assert published["Subject"] == f"[panopipe-dev] run {RUN} FAILED"
    assert "Failed step: EvaluateGate" in published["Message"]
    assert "Error: MetricBelowThreshold" in published["Message"]
    assert "Reason: metric validation:accuracy = 0.51 below threshold 0.8" in published["Message"]
    assert result["summary"]["error"] == "MetricBelowThreshold"
    assert result["summary"]["reason"] == "metric validation:accuracy = 0.51 below threshold 0.8"
    assert result["summary"]["failed_step"] == "EvaluateGate"


def test_a_plain_text_cause_is_the_reason() -> None:
    assert notify.error_reason({"Error": "States.Timeout", "Cause": "Task timed out after 900 seconds"}) == (
        "Task timed out after 900 seconds"
    )
    no_cause: Any = {"Error": "States.TaskFailed"}  # a Catch may carry no Cause
    assert notify.error_reason(no_cause) == "States.TaskFailed"


def test_a_failed_deployment_reports_the_devices_and_both_outcomes_of_the_rollback(inbox: Any) -> None:
    deployment = {
        "status": "FAILED",
        "devices": _devices(
            (
                "lobby",
                "FAILED",
                "DEPLOYMENT_FAILED: Model compilation failed (device reported: model_node INSTALL_ERROR)",
            ),
            ("dock", "SUCCEEDED", "DEPLOYMENT_SUCCEEDED"),
        ),
    }
    rollback: dict[str, Any] = {
        "status": "SUCCEEDED",
        "devices": _devices(("lobby", "SUCCEEDED", "DEPLOYMENT_SUCCEEDED")),
    }
    rollback["devices"][0].update(instance_id="ai-restored", replaced="ai-1")

    # check_deployment records itself as the failed step
    state = _state(deployment=deployment, rollback=rollback, failed_step="CheckDeployment")

    result = notify.notify(state)

    summary = result["summary"]
    assert summary["status"] == "FAILED" and summary["error"] == "DeploymentFailed"
    assert summary["failed_step"] == "CheckDeployment"
    assert summary["reason"] == (
        "deployment FAILED: lobby: FAILED - DEPLOYMENT_FAILED: Model compilation failed "
        "(device reported: model_node INSTALL_ERROR)"
    )
    assert summary["rollback"] == "SUCCEEDED"
    (published,) = inbox()
    body = published["Message"]
    assert "Failed step: CheckDeployment" in body
    assert "Deployment: FAILED" in body and "Rollback: SUCCEEDED" in body
    assert "  - lobby (device-1): instance ai-restored replacing ai-1: SUCCEEDED - DEPLOYMENT_SUCCEEDED" in body
    assert "  - dock (device-2): instance ai-2: SUCCEEDED - DEPLOYMENT_SUCCEEDED" in body


def test_a_timed_out_deployment_is_reported_as_step_timed_out(inbox: Any) -> None:
    deployment = {"status": "TIMED_OUT", "devices": _devices(("lobby", "TIMED_OUT", "still DEPLOYMENT_PENDING"))}
    rollback = {"status": "SUCCEEDED", "devices": []}
    result = notify.notify(_state(deployment=deployment, rollback=rollback, failed_step="CheckDeployment"))
    assert result["summary"]["error"] == "StepTimedOut" and result["summary"]["failed_step"] == "CheckDeployment"
    assert result["summary"]["reason"] == "deployment TIMED_OUT: lobby: TIMED_OUT - still DEPLOYMENT_PENDING"


def test_the_subject_stays_within_the_sns_limit() -> None:
    subject = notify.subject("panopipe-dev", {"run": "ds-" + "x" * 120, "status": "SUCCEEDED"})
    assert len(subject) == 100 and subject.endswith(" SUCCEEDED") and subject.isascii()


def test_a_failure_to_publish_raises(inbox: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(cfg.TOPIC_ARN, "arn:aws:sns:us-east-1:123456789012:no-such-topic")
    with pytest.raises(Exception, match="NotFound"):
        notify.notify(_state())


def test_throttling_becomes_throttled(inbox: Any) -> None:
    sns = clients.sns()
    with Stubber(sns) as stubber:
        stubber.add_client_error("publish", "Throttling", "Rate exceeded", 400)
        with pytest.raises(Throttled, match="Publish throttled"):
            notify.notify(_state())


def test_a_huge_run_input_still_gets_its_failure_reported(inbox: Any) -> None:
    """A 120 KB execution input once made the notification fail (SNS: Message too long)."""
    given = {"dataset": "s3://aws-panorama-data/" + "d" * 120_000}
    cause = json.dumps(
        {"errorMessage": f"input.dataset = {given['dataset']!r}: not valid", "errorType": "InvalidInput"}
    )
    state = {"input": given, "run": {"name": RUN, "started": "t"}, "error": {"Error": "InvalidInput", "Cause": cause}}

    result = notify.notify(state)

    (published,) = inbox()
    assert len(published["Message"].encode()) < 4_000
    assert "… (120052 characters)" in published["Message"]  # the input (as JSON), cut, with its length
    assert "Error: InvalidInput" in published["Message"]
    assert len(result["summary"]["reason"]) <= notify.REASON_MAX


def test_a_message_is_cut_to_what_sns_takes() -> None:
    text = "é" * 200_000  # 400,000 bytes of UTF-8
    fitted = notify.fit(text, notify.MESSAGE_MAX_BYTES)
    assert len(fitted.encode()) <= notify.MESSAGE_MAX_BYTES and "message cut: 400000 bytes" in fitted
    assert notify.fit("short", 100) == "short"


def test_a_superseded_run_is_reported_with_the_reason_and_no_error(inbox: Any) -> None:
    reason = "data datasets/a/ (2026-12-01T10:00:00.000Z) is older than datasets/b/ (…), deployed by run r2"
    state = _state(lock={"status": "SUPERSEDED", "reason": reason})

    summary = notify.notify(state)["summary"]

    assert (summary["status"], summary["error"], summary["reason"]) == ("SUPERSEDED", None, reason)
    (published,) = inbox()
    assert published["Subject"].endswith(" SUPERSEDED")
    assert f"Superseded: {reason}" in published["Message"] and "Error:" not in published["Message"]


def test_a_fleet_failure_counts_every_outcome_and_names_only_the_devices_that_did_not_succeed(inbox: Any) -> None:
    devices = _devices(*[(f"cam-{i:03d}", "SUCCEEDED", "DEPLOYMENT_SUCCEEDED") for i in range(199)])
    devices += _devices(("cam-199", "FAILED", "DEPLOYMENT_FAILED: camera stream unreachable"))
    devices[-1].update(device_id="device-200", instance_id="ai-200")
    rollback = {"status": "SUCCEEDED", "devices": _devices(("cam-199", "SUCCEEDED", "DEPLOYMENT_SUCCEEDED"))}
    counts = {
        "devices": 200,
        "succeeded": 199,
        "failed": 1,
        "timed_out": 0,
        "rolled_back": 1,
        "rollback_failed": 0,
        "rollback_skipped": 0,
    }
    state = _state(
        deployment={"status": "FAILED", "devices": devices},
        rollback=rollback,
        fleet={"devices": 200, "counts": counts},
        failed_step="CheckDeployment",
    )

    summary = notify.notify(state)["summary"]

    assert summary["reason"] == (
        "deployment FAILED on 1 of 200 devices (199 succeeded; 1 rolled back): "
        "cam-199: FAILED - DEPLOYMENT_FAILED: camera stream unreachable"
    )
    assert summary["counts"] == counts
    body = inbox()[0]["Message"]
    assert "Devices: devices 200, succeeded 199, failed 1, timed out 0, rolled back 1" in body
    assert "  199 of 200 devices SUCCEEDED; the others:" in body
    assert "  - cam-199 (device-200): instance ai-200: FAILED - DEPLOYMENT_FAILED: camera stream unreachable" in body
    assert "cam-007" not in body, "succeeded devices are counted, not listed"
