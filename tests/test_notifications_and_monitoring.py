"""The pipeline's notifications and monitoring: the topic, its key, and the device alarms that report to it."""

from __future__ import annotations

from typing import Any

from tests.conftest import Synthesized


def _one(synthesized: Synthesized, stage: str, type_: str) -> dict[str, Any]:
    (resource,) = synthesized.resources(stage, "Pipeline", type_).values()
    return resource


def test_alarms_per_device_use_metrics_insights_and_notify(synthesized: Synthesized) -> None:
    alarms = synthesized.resources("example", "Pipeline", "AWS::CloudWatch::Alarm")
    alarms = {k: a for k, a in alarms.items() if "Metrics" in a["Properties"]}  # the runs' alarms have MetricName
    assert len(alarms) == 4  # two devices x (ApplicationErrors, DeviceActive)
    expressions = sorted(a["Properties"]["Metrics"][0]["Expression"] for a in alarms.values())
    assert expressions == [
        "SELECT SUM(ApplicationErrors) FROM SCHEMA(PanoramaDeviceMetrics, ApplicationInstanceId, "
        "ApplicationInstanceName) WHERE ApplicationInstanceName = 'panopipe-prod-device-abcdefghijklmnopqrstuvwxyz'",
        "SELECT SUM(ApplicationErrors) FROM SCHEMA(PanoramaDeviceMetrics, ApplicationInstanceId, "
        "ApplicationInstanceName) WHERE ApplicationInstanceName = 'panopipe-prod-warehouse-appliance-2'",
        "SELECT SUM(DeviceActive) FROM SCHEMA(PanoramaDeviceMetrics, DeviceId, DeviceName) "
        "WHERE DeviceId = 'device-abcdefghijklmnopqrstuvwxyz'",
        "SELECT SUM(DeviceActive) FROM SCHEMA(PanoramaDeviceMetrics, DeviceId, DeviceName) "
        "WHERE DeviceName = 'warehouse-appliance-2'",
    ]
    topic = next(iter(synthesized.resources("example", "Pipeline", "AWS::SNS::Topic")))
    for alarm in alarms.values():
        props = alarm["Properties"]
        assert props["AlarmActions"] == [{"Ref": topic}]
        assert props["OKActions"] == [{"Ref": topic}]
        offline = "DeviceActive" in props["Metrics"][0]["Expression"]
        assert props["TreatMissingData"] == ("breaching" if offline else "notBreaching")
        assert props["ComparisonOperator"] == ("LessThanThreshold" if offline else "GreaterThanOrEqualToThreshold")


def test_topic_is_kms_encrypted_tls_only_and_cloudwatch_may_use_its_key(synthesized: Synthesized) -> None:
    topic = _one(synthesized, "example", "AWS::SNS::Topic")["Properties"]
    assert "KmsMasterKeyId" in topic
    assert topic["TopicName"] == "panopipe-prod-notifications"
    policy = _one(synthesized, "example", "AWS::SNS::TopicPolicy")["Properties"]["PolicyDocument"]["Statement"]
    assert any(s["Effect"] == "Deny" and s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}} for s in policy)
    key = _one(synthesized, "example", "AWS::KMS::Key")["Properties"]
    cloudwatch = [s for s in key["KeyPolicy"]["Statement"] if s.get("Sid") == "AllowCloudWatchAlarmsToPublish"]
    assert cloudwatch[0]["Principal"] == {"Service": "cloudwatch.amazonaws.com"}
    subscription = _one(synthesized, "example", "AWS::SNS::Subscription")["Properties"]
    assert subscription == {
        "Protocol": "email",
        "Endpoint": "ml-platform@example.com",
        "TopicArn": {"Ref": next(iter(synthesized.resources("example", "Pipeline", "AWS::SNS::Topic")))},
    }
    assert not synthesized.resources("dev", "Pipeline", "AWS::SNS::Subscription")  # no e-mail in dev.yaml
