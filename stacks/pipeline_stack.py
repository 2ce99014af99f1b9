"""Stateless stack: the pipeline's state machine, its step functions, triggers, alarms and dashboard."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Stack
from constructs import Construct

from panopipe.config import PipelineConfig
from stacks.pipeline import Pipeline, PipelineInputs
from stacks.pipeline_monitoring import PipelineMonitoring
from stacks.pipeline_triggers import PipelineTriggers


class PipelineStack(Stack):
    """Everything a run needs that is not stateful: replaced freely on every deploy."""

    def __init__(
        self, scope: Construct, construct_id: str, *, config: PipelineConfig, inputs: PipelineInputs, **kwargs: Any
    ) -> None:
        super().__init__(
            scope,
            construct_id,
            description=f"panorama-pipeline {config.environment}: training-to-deployment state machine",
            **kwargs,
        )
        self.pipeline = Pipeline(self, "Pipeline", config=config, inputs=inputs)
        self.triggers = PipelineTriggers(
            self,
            "Triggers",
            config=config,
            data_bucket=self.pipeline.buckets.data,
            trigger=self.pipeline.functions["Trigger"],
        )
        self.monitoring = PipelineMonitoring(
            self, "Monitoring", config=config, pipeline=self.pipeline, topic=inputs.topic
        )
        CfnOutput(self, "StateMachineArn", value=self.pipeline.state_machine.state_machine_arn)
        CfnOutput(self, "StateMachineName", value=self.pipeline.state_machine.state_machine_name)
        CfnOutput(self, "DashboardName", value=self.monitoring.dashboard_name)
