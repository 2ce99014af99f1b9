"""One deployable environment: the stacks that ``cdk deploy '**'`` (or a delivery stage) deploys."""

from __future__ import annotations

from typing import Any

from aws_cdk import Environment, Stage
from constructs import Construct

from panopipe.config import EnvironmentConfig
from stacks.application_stack import ApplicationStack
from stacks.pipeline_stack import PipelineStack
from stacks.storage import StorageStack


class EnvironmentStage(Stage):
    """Storage (stateful), the Panorama application, and the pipeline, wired by passing constructs."""

    def __init__(self, scope: Construct, construct_id: str, *, config: EnvironmentConfig, **kwargs: Any) -> None:
        super().__init__(
            scope,
            construct_id,
            env=Environment(account=config.account, region=config.region),
            **kwargs,
        )
        prefix = config.prefix
        self.storage = StorageStack(self, "Storage", stack_name=f"{prefix}-storage", config=config)
        storage = self.storage.storage
        self.application = ApplicationStack(
            self, "Application", stack_name=f"{prefix}-application", config=config, storage=storage
        )
        self.pipeline = PipelineStack(
            self,
            "Pipeline",
            stack_name=f"{prefix}-pipeline",
            config=config,
            storage=storage,
            application=self.application.application,
            runtime_role=self.application.runtime_role,
        )
