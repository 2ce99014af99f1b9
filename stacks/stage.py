"""One deployable environment: the same stacks for `cdk deploy` and, later, the GitOps pipeline."""

from __future__ import annotations

from typing import Any

from aws_cdk import Environment, Stage
from constructs import Construct

from panopipe.config import PipelineConfig
from panopipe.naming import resource_prefix
from stacks.application_stack import ApplicationStack
from stacks.pipeline import PipelineInputs
from stacks.pipeline_stack import PipelineStack
from stacks.service_roles_stack import ServiceRolesStack
from stacks.storage_stack import StorageStack


class PipelineStage(Stage):
    """Every stack of one environment, wired together by passing constructs (not names)."""

    def __init__(self, scope: Construct, construct_id: str, *, config: PipelineConfig, **kwargs: Any) -> None:
        super().__init__(
            scope,
            construct_id,
            env=Environment(account=config.account, region=config.region),
            **kwargs,
        )
        prefix = resource_prefix(config.project, config.environment)
        self.storage = StorageStack(self, "Storage", stack_name=f"{prefix}-storage", config=config)
        self.service_roles = ServiceRolesStack(
            self,
            "ServiceRoles",
            stack_name=f"{prefix}-service-roles",
            config=config,
            storage=self.storage.storage,
        )
        self.application = ApplicationStack(
            self,
            "Application",
            stack_name=f"{prefix}-application",
            config=config,
            storage=self.storage.storage,
            runtime_role=self.service_roles.roles.panorama_runtime_role,
        )
        application = self.application.application
        self.pipeline = PipelineStack(
            self,
            "Pipeline",
            stack_name=f"{prefix}-pipeline",
            config=config,
            inputs=PipelineInputs(
                storage=self.storage.storage,
                sagemaker_role=self.service_roles.roles.sagemaker_execution_role,
                runtime_role=self.service_roles.roles.panorama_runtime_role,
                topic=self.application.notifications.topic,
                model_package=application.spec.model_package,
                code_package=application.spec.code_package,
                manifest_template_key=application.manifest_template_key,
            ),
        )
