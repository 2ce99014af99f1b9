"""What starts a run: a ``_READY`` marker landing in a data set's folder, and an optional schedule.

Both go through the trigger function, which names the execution after the data set version: the
same version never runs twice, however many events arrive (``lambda_handlers/trigger.py``).
"""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from constructs import Construct

from lambda_handlers.domain import READY_MARKER
from panopipe.config import EnvironmentConfig


class RunTriggers(Construct):
    """EventBridge rules to the trigger function (S3 delivers events through EventBridge)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: EnvironmentConfig,
        data_bucket: s3.IBucket,
        trigger: lambda_.IFunction,
    ) -> None:
        super().__init__(scope, construct_id)
        prefix = config.prefix
        dataset_prefix = config.runs.dataset_prefix
        self.on_ready = events.Rule(
            self,
            "OnDataSetReady",
            rule_name=f"{prefix}-dataset-ready",
            description=f"Starts a run when {dataset_prefix}<data set>/{READY_MARKER} is written",
            event_pattern=events.EventPattern(
                source=["aws.s3"],
                detail_type=["Object Created"],
                detail={
                    "bucket": {"name": [data_bucket.bucket_name]},
                    "object": {"key": [{"wildcard": f"{dataset_prefix}*/{READY_MARKER}"}]},
                },
            ),
        )
        self.on_ready.add_target(_target(trigger, None))
        self.schedule: events.Rule | None = None
        if config.runs.schedule:
            self.schedule = events.Rule(
                self,
                "OnSchedule",
                rule_name=f"{prefix}-scheduled-run",
                description="Runs the newest data set that has a _READY marker (never a version twice)",
                schedule=events.Schedule.expression(config.runs.schedule),
            )
            self.schedule.add_target(_target(trigger, {"schedule": {"prefix": dataset_prefix}}))


def _target(trigger: lambda_.IFunction, payload: dict[str, object] | None) -> targets.LambdaFunction:
    """The trigger function as a target, retried by EventBridge for up to an hour."""
    return targets.LambdaFunction(
        trigger,
        event=events.RuleTargetInput.from_object(payload) if payload is not None else None,
        retry_attempts=8,
        max_event_age=Duration.hours(1),
    )
