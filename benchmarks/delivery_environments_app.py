"""Baseline for the delivery benchmark: the delivery file's environments as plain stages, no pipeline."""

import aws_cdk as cdk

from panopipe.config.delivery import load_delivery
from stacks.stage import EnvironmentStage

app = cdk.App()
for stage in load_delivery(app.node.get_context("delivery")).stages:
    EnvironmentStage(app, stage.config.prefix, config=stage.config)
app.synth()
