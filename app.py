#!/usr/bin/env python3
"""CDK entry point: read the environment's config once, then build its stage."""

import sys

import aws_cdk as cdk
import yaml

from panopipe.config import DEFAULT_CONFIG_PATH, ConfigError, load_config
from stacks.stage import EnvironmentStage

app = cdk.App()
config_path = app.node.try_get_context("config") or DEFAULT_CONFIG_PATH
# -c config.<field path>=<YAML value> sets one field on top of the file (e.g. config.runs.poll_seconds=1).
context = app.node.get_all_context()
overrides = {
    key.removeprefix("config."): yaml.safe_load(str(v)) for key, v in context.items() if key.startswith("config.")
}
try:
    config = load_config(config_path, overrides=overrides)
except ConfigError as error:
    sys.exit(f"error: {error}")
EnvironmentStage(app, config.prefix, config=config)
app.synth()
