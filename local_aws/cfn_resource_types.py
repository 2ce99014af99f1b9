"""CloudFormation in the local AWS: resource types and properties moto's CloudFormation lacks (its APIs exist).

- ``AWS::CloudWatch::Alarm``: moto has PutMetricAlarm but not the resource type ("No Moto
  CloudFormation support"), so it skipped the pipeline's alarms and the dashboard's ``Fn::GetAtt``
  on an alarm failed the stack. The type is added here (Ref: the name, GetAtt Arn), through moto's
  table of types rather than as a ``CloudFormationModel`` subclass, which would stay registered
  after the patches are undone.
- ``AWS::S3::Bucket``: moto applied only BucketEncryption and Tags, so objects had no versions and
  the data bucket's EventBridge rule never saw an object; VersioningConfiguration and EventBridge
  notifications are applied too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def _metric_queries(metrics: Any) -> list[Any] | None:
    """CloudFormation's ``Metrics`` (metric math) as moto's MetricDataQuery objects."""
    from moto.cloudwatch.models import Dimension, Metric, MetricDataQuery, MetricStat

    if not metrics:
        return None
    queries = []
    for metric in metrics:
        stat: Any = metric.get("MetricStat") or {}
        inner: Any = stat.get("Metric") or {}
        metric_stat = None
        if inner.get("MetricName"):
            dimensions = [Dimension(name=d.get("Name"), value=d.get("Value")) for d in inner.get("Dimensions") or []]
            metric_stat = MetricStat(
                metric=Metric(metric_name=inner["MetricName"], namespace=inner.get("Namespace"), dimensions=dimensions),
                period=stat.get("Period"),
                stat=stat.get("Stat"),
                unit=stat.get("Unit"),
            )
        queries.append(
            MetricDataQuery(
                query_id=metric.get("Id"),
                label=metric.get("Label"),
                period=metric.get("Period"),
                return_data=metric.get("ReturnData"),
                expression=metric.get("Expression"),
                metric_stat=metric_stat,
            )
        )
    return queries


class _CloudWatchAlarm:
    """``AWS::CloudWatch::Alarm`` for moto's CloudFormation (moto has PutMetricAlarm, not the type).

    Ref is the alarm's name, GetAtt Arn its ARN, as in CloudFormation. A plain class handed to
    moto through its table of types (not a ``CloudFormationModel`` subclass, which would stay
    registered after :func:`moto_patches.uninstall`).
    """

    def __init__(self, alarm: Any) -> None:
        """Wrap moto's Alarm."""
        self.alarm = alarm

    @staticmethod
    def cloudformation_type() -> str:
        """The resource type."""
        return "AWS::CloudWatch::Alarm"

    @staticmethod
    def cloudformation_name_type() -> str:
        """The property that names the resource."""
        return "AlarmName"

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        """GetAtt attributes."""
        return attr == "Arn"

    @property
    def physical_resource_id(self) -> str:
        """Ref: the alarm's name."""
        return str(self.alarm.name)

    def get_cfn_attribute(self, attribute_name: str) -> Any:
        """GetAtt Arn."""
        from moto.cloudformation.exceptions import UnformattedGetAttTemplateException

        if attribute_name == "Arn":
            return self.alarm.alarm_arn
        raise UnformattedGetAttTemplateException()

    def is_created(self) -> bool:
        """Created synchronously."""
        return True

    @classmethod
    def create_from_cloudformation_json(
        cls, resource_name: str, cloudformation_json: dict[str, Any], account_id: str, region_name: str, **kwargs: Any
    ) -> _CloudWatchAlarm:
        """PutMetricAlarm with the resource's properties."""
        from moto.cloudwatch.models import cloudwatch_backends

        props: Any = cloudformation_json.get("Properties") or {}
        alarm = cloudwatch_backends[account_id][region_name].put_metric_alarm(
            name=resource_name,
            namespace=props.get("Namespace"),
            metric_name=props.get("MetricName"),
            metric_data_queries=_metric_queries(props.get("Metrics")),
            comparison_operator=props.get("ComparisonOperator"),
            evaluation_periods=props.get("EvaluationPeriods"),
            datapoints_to_alarm=props.get("DatapointsToAlarm"),
            period=props.get("Period"),
            threshold=props.get("Threshold"),
            statistic=props.get("Statistic"),
            extended_statistic=props.get("ExtendedStatistic"),
            description=props.get("AlarmDescription"),
            dimensions=props.get("Dimensions") or [],
            alarm_actions=props.get("AlarmActions") or [],
            ok_actions=props.get("OKActions") or [],
            insufficient_data_actions=props.get("InsufficientDataActions") or [],
            unit=props.get("Unit"),
            actions_enabled=props.get("ActionsEnabled", True) not in (False, "false"),
            treat_missing_data=props.get("TreatMissingData"),
            evaluate_low_sample_count_percentile=props.get("EvaluateLowSampleCountPercentile"),
            threshold_metric_id=props.get("ThresholdMetricId"),
            tags=props.get("Tags") or [],
        )
        return cls(alarm)

    @classmethod
    def update_from_cloudformation_json(
        cls,
        original_resource: _CloudWatchAlarm,
        new_resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
    ) -> _CloudWatchAlarm:
        """PutMetricAlarm again (a new AlarmName replaces the alarm)."""
        name = (cloudformation_json.get("Properties") or {}).get("AlarmName") or original_resource.physical_resource_id
        if name != original_resource.physical_resource_id:
            original_resource.delete(account_id, region_name)
        return cls.create_from_cloudformation_json(name, cloudformation_json, account_id, region_name)

    @classmethod
    def delete_from_cloudformation_json(
        cls, resource_name: str, cloudformation_json: dict[str, Any], account_id: str, region_name: str
    ) -> None:
        """DeleteAlarms."""
        from moto.cloudwatch.models import cloudwatch_backends

        cloudwatch_backends[account_id][region_name].delete_alarms([resource_name])

    def delete(self, account_id: str, region_name: str) -> None:
        """DeleteAlarms."""
        self.delete_from_cloudformation_json(self.physical_resource_id, {}, account_id, region_name)


def _bucket_from_cloudformation(original: Callable[..., Any]) -> Any:
    """AWS::S3::Bucket: also VersioningConfiguration and EventBridge notifications.

    (moto applied only BucketEncryption and Tags, so objects had no versions and the data bucket's
    EventBridge rule never saw an object.)
    """

    def create(
        cls: Any, /, resource_name: str, cloudformation_json: Any, account_id: str, region_name: str, **kwargs: Any
    ) -> Any:
        bucket = original(resource_name, cloudformation_json, account_id, region_name, **kwargs)
        properties: Any = cloudformation_json.get("Properties") or {}
        status = (properties.get("VersioningConfiguration") or {}).get("Status")
        if status:
            bucket.versioning_status = status
        event_bridge = (properties.get("NotificationConfiguration") or {}).get("EventBridgeConfiguration") or {}
        if event_bridge.get("EventBridgeEnabled") in (True, "true"):
            bucket.set_notification_configuration({"EventBridgeConfiguration": {}})
        return bucket

    return classmethod(create)


#: Resource types added to moto's table, by type.
_EXTRA_TYPES: dict[str, Any] = {_CloudWatchAlarm.cloudformation_type(): _CloudWatchAlarm}


class _WithExtraTypes:
    """moto's cached type table (``get_model_map`` / ``get_name_type_map``) plus :data:`_EXTRA_TYPES`."""

    def __init__(self, original: Any, extra: Callable[[], dict[str, Any]]) -> None:
        self.original = original
        self.extra = extra

    def __call__(self) -> dict[str, Any]:
        return {**self.original(), **self.extra()}

    def cache_clear(self) -> None:
        """Forget moto's cached table (new CloudFormationModel subclasses count from now)."""
        self.original.cache_clear()


def _with_alarm_models(original: Any) -> Any:
    """``get_model_map`` with the extra types.

    (moto: "No Moto CloudFormation support for AWS::CloudWatch::Alarm": skipped, so the pipeline
    dashboard's GetAtt on an alarm failed the stack.)
    """
    return _WithExtraTypes(original, lambda: dict(_EXTRA_TYPES))


def _with_alarm_names(original: Any) -> Any:
    """``get_name_type_map`` with the extra types' name properties."""
    return _WithExtraTypes(original, lambda: {k: v.cloudformation_name_type() for k, v in _EXTRA_TYPES.items()})


def replacements() -> list[tuple[object, str, Callable[[Any], Any]]]:
    """(owner, attribute, make(original) -> replacement) for the added types and properties."""
    from moto.cloudformation import parsing
    from moto.s3.models import FakeBucket

    return [
        (parsing, "get_model_map", _with_alarm_models),
        (parsing, "get_name_type_map", _with_alarm_names),
        (FakeBucket, "create_from_cloudformation_json", _bucket_from_cloudformation),
    ]
