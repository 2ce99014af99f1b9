#!/usr/bin/env python3
"""CDK entry point: read the configuration once, then build one environment or the delivery pipeline.

``-c config=<file>`` (default in cdk.json): that environment's stage, for ``cdk deploy '**'``.
``-c delivery=<file>``: the GitOps delivery stack alone; its stages hold the environments it names.
"""

import sys

import aws_cdk as cdk
import yaml

from panopipe.config import DEFAULT_CONFIG_PATH, ConfigError, load_config
from panopipe.config.delivery import load_delivery

app = cdk.App()
delivery_path = app.node.try_get_context("delivery")
config_path = app.node.try_get_context("config") or DEFAULT_CONFIG_PATH
# -c config.<field path>=<YAML value> sets one field on top of the file (e.g. config.runs.poll_seconds=1).
context = app.node.get_all_context()
overrides = {
    key.removeprefix("config."): yaml.safe_load(str(v)) for key, v in context.items() if key.startswith("config.")
}
try:
    if delivery_path:
        from stacks.delivery.pipeline_stack import DeliveryStack

        delivery = load_delivery(delivery_path)
        DeliveryStack(app, f"{delivery.name}-delivery", delivery=delivery)
    else:
        from stacks.stage import EnvironmentStage

        config = load_config(config_path, overrides=overrides)
        EnvironmentStage(app, config.prefix, config=config)
except ConfigError as error:
    sys.exit(f"error: {error}")
app.synth()
