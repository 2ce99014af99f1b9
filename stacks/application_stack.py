"""The Panorama application's stack: its packages and manifest template, and the role it runs as."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Stack
from constructs import Construct

from panopipe.config import EnvironmentConfig
from stacks.panorama_application import PanoramaApplication
from stacks.runtime_role import panorama_runtime_role
from stacks.storage import Storage


class ApplicationStack(Stack):
    """Stateless, but its packages hold the registered versions: it changes only with the application."""

    def __init__(
        self, scope: Construct, construct_id: str, *, config: EnvironmentConfig, storage: Storage, **kwargs: Any
    ) -> None:
        super().__init__(
            scope,
            construct_id,
            description=f"panorama-pipeline {config.environment}: Panorama application packages, manifest, runtime "
            "role",
            **kwargs,
        )
        self.application = PanoramaApplication(self, "Application", config=config, storage=storage)
        self.runtime_role = panorama_runtime_role(self, config)
        outputs = {
            "ModelPackageName": self.application.spec.model_package,
            "ModelPackageId": self.application.model_package.attr_package_id,
            "CodePackageName": self.application.spec.code_package,
            "CodePackageId": self.application.code_package.attr_package_id,
            "RuntimeRoleArn": self.runtime_role.role_arn,
            "ManifestTemplateKey": self.application.manifest_template_key,
        }
        for name, value in outputs.items():
            CfnOutput(self, name, value=value)
