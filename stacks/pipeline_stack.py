"""The pipeline's stack: the state machine with its step functions, and what serves it.

It composes the constructs and wires them to the other stacks' (storage: buckets and key;
application: packages, manifest template, runtime role): the SageMaker role its jobs run as, the
notification topic, the step functions and state machine, the triggers that start runs, and the
alarms and dashboard. Stateless: replaced freely on every deploy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aws_cdk import CfnOutput, Stack, Stage
from aws_cdk import aws_iam as iam
from aws_cdk import aws_s3_assets as s3_assets
from constructs import Construct

from panopipe.config import EnvironmentConfig
from stacks.lambda_code import ROOT
from stacks.monitoring import Monitoring
from stacks.notifications import Notifications
from stacks.panorama_application import PanoramaApplication
from stacks.sagemaker_role import sagemaker_execution_role
from stacks.source_archive import write_archive
from stacks.steps.state_machine import PipelineStateMachine
from stacks.steps.step_spec import StepResources
from stacks.storage import Storage
from stacks.training_image import image_uri, processing_image, registry_account, training_image
from stacks.triggers import RunTriggers


class PipelineStack(Stack):
    """Everything a run needs that is not stateful."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: EnvironmentConfig,
        storage: Storage,
        application: PanoramaApplication,
        runtime_role: iam.IRole,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            scope,
            construct_id,
            description=f"panorama-pipeline {config.environment}: training-to-deployment state machine",
            **kwargs,
        )
        self.notifications = Notifications(self, "Notifications", config=config)
        buckets = storage.refs_in(self)
        image = training_image(config.training, config.model)
        registry = registry_account(self, image, config.region)
        processing = None
        if config.preparation.enabled:
            prep_image = processing_image()
            prep_registry = registry_account(self, prep_image, config.region, "ProcessingImageRegistry", True)
            processing = (prep_image, prep_registry)
        self.sagemaker_role = sagemaker_execution_role(
            self, config, storage, buckets, image, registry, processing=processing
        )
        resources = StepResources(
            scope=self,
            config=config,
            data=buckets.data,
            artifacts=buckets.artifacts,
            key=storage.key,
            sagemaker_role=self.sagemaker_role,
            runtime_role=runtime_role,
            topic=self.notifications.topic,
            manifest_template_key=application.manifest_template_key,
            model_package=application.spec.model_package,
            code_package=application.spec.code_package,
            training_image=image_uri(image, registry, config.region or self.region),
            training_source=self._training_source(config),
            processing_image=image_uri(processing[0], processing[1], config.region or self.region)
            if processing
            else None,
            preparation_script=self._preparation_script() if processing else None,
        )
        self.pipeline = PipelineStateMachine(self, "Pipeline", resources=resources)
        self.triggers = RunTriggers(
            self, "Triggers", config=config, data_bucket=buckets.data, trigger=self.pipeline.trigger
        )
        self.monitoring = Monitoring(
            self,
            "Monitoring",
            config=config,
            pipeline=self.pipeline,
            application=application.spec,
            topic=self.notifications.topic,
        )
        self.state_machine_arn_output = CfnOutput(
            self, "StateMachineArn", value=self.pipeline.state_machine.state_machine_arn
        )
        CfnOutput(self, "StateMachineName", value=self.pipeline.state_machine.state_machine_name)
        CfnOutput(self, "NotificationTopicArn", value=self.notifications.topic.topic_arn)
        CfnOutput(self, "DashboardName", value=self.monitoring.dashboard_name)

    def _preparation_script(self) -> s3_assets.Asset:
        """``processing/prepare.py`` as a plain file asset (no bundling): the Processing job's code."""
        return s3_assets.Asset(self, "PreparationScript", path=str(ROOT / "processing" / "prepare.py"))

    def _training_source(self, config: EnvironmentConfig) -> s3_assets.Asset | None:
        """Script mode: the training code as a deterministic tar.gz file asset (built at synth)."""
        directory = config.training.source_directory
        if directory is None:
            return None
        archive = write_archive(ROOT / directory, Path(Stage.of(self).outdir) / "training-sources")  # type: ignore[union-attr]
        return s3_assets.Asset(self, "TrainingSource", path=str(archive))
