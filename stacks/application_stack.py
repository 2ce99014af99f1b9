"""Stateless stack: the Panorama application definition and its notifications."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_iam as iam
from constructs import Construct

from panopipe.config import PipelineConfig
from stacks.application import PanoramaApplication
from stacks.notifications import PipelineNotifications
from stacks.storage import PipelineStorage


class ApplicationStack(Stack):
    """Packages, manifest template, alarms and the SNS topic they (and the pipeline) report to."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: PipelineConfig,
        storage: PipelineStorage,
        runtime_role: iam.IRole,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            scope,
            construct_id,
            description=f"panorama-pipeline {config.environment}: Panorama application packages, manifest, alarms",
            **kwargs,
        )
        self.notifications = PipelineNotifications(self, "Notifications", config=config)
        self.application = PanoramaApplication(
            self, "Application", config=config, storage=storage, topic=self.notifications.topic
        )
        self.runtime_role = runtime_role
        outputs = {
            "ModelPackageName": self.application.spec.model_package,
            "ModelPackageId": self.application.model_package.attr_package_id,
            "CodePackageName": self.application.spec.code_package,
            "CodePackageId": self.application.code_package.attr_package_id,
            "RuntimeRoleArn": runtime_role.role_arn,
            "NotificationTopicArn": self.notifications.topic.topic_arn,
            "ManifestTemplateKey": self.application.manifest_template_key,
        }
        for name, value in outputs.items():
            CfnOutput(self, name, value=value)
