"""Alarms to the pipeline's topic, and a dashboard of runs, step durations and step errors.

Alarms: failed, timed-out and aborted runs; application instances that report errors; devices that
stop reporting.
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_sns as sns
from constructs import Construct

from panopipe.config import DeviceConfig, EnvironmentConfig
from panorama_app.manifest.spec import ApplicationSpec
from stacks.steps.state_machine import PipelineStateMachine

PERIOD = Duration.minutes(5)


class Monitoring(Construct):
    """Every failed or timed-out run and every unhealthy device alarms to the topic; the dashboard shows why."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: EnvironmentConfig,
        pipeline: PipelineStateMachine,
        application: ApplicationSpec,
        topic: sns.ITopic,
    ) -> None:
        super().__init__(scope, construct_id)
        prefix = config.prefix
        self.spec = application
        machine = pipeline.state_machine
        self.alarms = []
        for name, metric, what in (
            ("RunFailed", machine.metric_failed(period=PERIOD, statistic="Sum"), "failed"),
            ("RunTimedOut", machine.metric_timed_out(period=PERIOD, statistic="Sum"), "timed out"),
            ("RunAborted", machine.metric_aborted(period=PERIOD, statistic="Sum"), "was aborted"),
        ):
            alarm = cloudwatch.Alarm(
                self,
                name,
                alarm_name=f"{prefix}-pipeline-{name}",
                alarm_description=f"A {prefix} pipeline run {what}; the notification topic has the step and reason",
                metric=metric,
                threshold=1,
                evaluation_periods=1,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            )
            alarm.add_alarm_action(actions.SnsAction(topic))
            self.alarms.append(alarm)
        self.dashboard_name = f"{prefix}-pipeline"
        dashboard = cloudwatch.Dashboard(self, "Dashboard", dashboard_name=self.dashboard_name)
        runs = [
            machine.metric_started(period=PERIOD, statistic="Sum", label="started"),
            machine.metric_succeeded(period=PERIOD, statistic="Sum", label="succeeded"),
            machine.metric_failed(period=PERIOD, statistic="Sum", label="failed"),
            machine.metric_timed_out(period=PERIOD, statistic="Sum", label="timed out"),
        ]
        steps = pipeline.functions.items()
        durations = [f.metric_duration(period=PERIOD, statistic="Maximum", label=name) for name, f in steps]
        errors = [f.metric_errors(period=PERIOD, statistic="Sum", label=name) for name, f in steps]
        dashboard.add_widgets(
            cloudwatch.GraphWidget(title="Runs", left=runs, width=12),
            cloudwatch.GraphWidget(
                title="Run duration (ms)",
                left=[machine.metric_time(period=PERIOD, statistic="Maximum", label="execution time")],
                width=12,
            ),
        )
        dashboard.add_widgets(
            cloudwatch.GraphWidget(title="Step duration (ms, max)", left=durations, width=12),
            cloudwatch.GraphWidget(title="Step errors", left=errors, width=12),
        )
        dashboard.add_widgets(cloudwatch.AlarmStatusWidget(title="Alarms", alarms=self.alarms, width=24))
        for device in config.devices:
            if device.tags is None:  # a tag group's devices are known only when a run resolves them
                self._device_alarms(device, topic)

    def _device_alarms(self, device: DeviceConfig, topic: sns.ITopic) -> None:
        """ApplicationErrors of this device's instance and DeviceActive of the device itself.

        Panorama publishes both with two dimensions, one of which (instance id, or the device id
        or name not in the config) is unknown here, so the alarms use Metrics Insights queries.
        """
        instance = self.spec.instance_name(device.key)
        device_filter = f"DeviceId = '{device.id}'" if device.id else f"DeviceName = '{device.name}'"
        checks = (
            (
                "ApplicationErrors",
                "SELECT SUM(ApplicationErrors) FROM SCHEMA(PanoramaDeviceMetrics, ApplicationInstanceId, "
                f"ApplicationInstanceName) WHERE ApplicationInstanceName = '{instance}'",
                cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                cloudwatch.TreatMissingData.NOT_BREACHING,
                f"the application {instance} reports errors",
            ),
            (
                "DeviceActive",
                "SELECT SUM(DeviceActive) FROM SCHEMA(PanoramaDeviceMetrics, DeviceId, DeviceName) "
                f"WHERE {device_filter}",
                cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
                cloudwatch.TreatMissingData.BREACHING,
                f"the appliance {device.key} is not active (offline or unreachable)",
            ),
        )
        for metric, query, comparison, missing, what in checks:
            alarm = cloudwatch.Alarm(
                self,
                f"{metric}-{device.key}",
                alarm_description=f"Panorama: {what} for 5 minutes",
                metric=cloudwatch.MathExpression(expression=query, period=Duration.minutes(1), using_metrics={}),
                threshold=1,
                evaluation_periods=5,
                datapoints_to_alarm=5,
                comparison_operator=comparison,
                treat_missing_data=missing,
            )
            alarm.add_alarm_action(actions.SnsAction(topic))
            alarm.add_ok_action(actions.SnsAction(topic))
