"""One deployable environment: the stacks that ``cdk deploy '**'`` (or a delivery stage) deploys."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Environment, Stage
from constructs import Construct

from panopipe.config import EnvironmentConfig
from stacks.application_stack import ApplicationStack
from stacks.delivery.access import DeliveryAccess, DeliveryAccessStack
from stacks.pipeline_stack import PipelineStack
from stacks.storage import StorageStack


class EnvironmentStage(Stage):
    """Storage (stateful), the Panorama application, and the pipeline, wired by passing constructs.

    In a stage of the delivery pipeline (``delivery_access`` given) a fourth stack holds the roles
    its post-deploy steps assume; the other three are the same as ``cdk deploy '**'`` deploys.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: EnvironmentConfig,
        delivery_access: DeliveryAccess | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            scope,
            construct_id,
            env=Environment(account=config.account, region=config.region),
            **kwargs,
        )
        self.config = config
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
        self.delivery_access = (
            DeliveryAccessStack(
                self, "DeliveryAccess", stack_name=f"{prefix}-delivery-access", config=config, access=delivery_access
            )
            if delivery_access is not None
            else None
        )

    @property
    def outputs(self) -> dict[str, CfnOutput]:
        """The stack outputs a delivery stage's check reads, by output id."""
        return {**self.storage.outputs, "StateMachineArn": self.pipeline.state_machine_arn_output}
