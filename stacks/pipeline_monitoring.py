"""Alarms on failed and timed-out runs, and a dashboard of runs and step durations."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_sns as sns
from constructs import Construct

from panopipe.config import PipelineConfig
from panopipe.naming import resource_prefix
from stacks.pipeline import STEPS, Pipeline

PERIOD = Duration.minutes(5)


class PipelineMonitoring(Construct):
    """Every failed or timed-out execution alarms to the pipeline topic; the dashboard shows why."""

    def __init__(
        self, scope: Construct, construct_id: str, *, config: PipelineConfig, pipeline: Pipeline, topic: sns.ITopic
    ) -> None:
        super().__init__(scope, construct_id)
        prefix = resource_prefix(config.project, config.environment)
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
        durations = [
            pipeline.functions[step.id].metric_duration(period=PERIOD, statistic="Maximum", label=step.id)
            for step in STEPS
        ]
        errors = [
            pipeline.functions[step.id].metric_errors(period=PERIOD, statistic="Sum", label=step.id) for step in STEPS
        ]
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
