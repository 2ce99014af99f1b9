"""The Panorama application's cloud side: its packages, its manifest template, its alarms.

Application instances are not CloudFormation resources here: ``AWS::Panorama::ApplicationInstance``
is replaced on any change, so the pipeline creates and replaces instances itself.
"""

from __future__ import annotations

import json

from aws_cdk import CustomResource, Duration, Fn, RemovalPolicy
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_panorama as panorama
from aws_cdk import aws_sns as sns
from constructs import Construct

from panopipe.application import application_spec
from panopipe.config import DeviceConfig, PipelineConfig
from panorama_app.manifest import documents
from panorama_app.manifest.spec import ApplicationSpec
from stacks.handler_code import RUNTIME, handler_code, handler_path
from stacks.nag import acknowledge
from stacks.storage import PipelineStorage

#: Key of the manifest template in the artifacts bucket (read by the pipeline's deploy step).
MANIFEST_TEMPLATE_KEY = "panorama/application-manifest.json"
#: Account placeholder in the rendered graph; CloudFormation substitutes the real id at deploy.
_ACCOUNT_PLACEHOLDER = "ACCOUNTID"


def manifest_template(spec: ApplicationSpec) -> str:
    """The stored template: the spec plus the graph and camera overrides it renders to.

    The documents are built and validated here, at synth time, with a placeholder account that
    ``Fn::Sub`` replaces by ``${AWS::AccountId}`` at deploy time (no account id is committed).
    """
    graph = documents.graph(spec, _ACCOUNT_PLACEHOLDER)
    overrides = documents.camera_overrides(spec, _ACCOUNT_PLACEHOLDER, graph)
    body = json.dumps({"spec": json.loads(spec.to_json()), "graph": graph, "overrides": overrides}, sort_keys=True)
    return body.replace(f"{_ACCOUNT_PLACEHOLDER}::", "${AWS::AccountId}::")


class PanoramaApplication(Construct):
    """Model and code packages, the stored manifest template, and alarms on device metrics."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: PipelineConfig,
        storage: PipelineStorage,
        topic: sns.ITopic,
    ) -> None:
        super().__init__(scope, construct_id)
        self.spec = application_spec(config)
        self.model_package = panorama.CfnPackage(self, "ModelPackage", package_name=self.spec.model_package)
        self.code_package = panorama.CfnPackage(self, "CodePackage", package_name=self.spec.code_package)
        self.manifest_template_key = MANIFEST_TEMPLATE_KEY
        self._store_manifest_template(storage)
        for device in config.devices:
            self._device_alarms(device, topic)

    def _store_manifest_template(self, storage: PipelineStorage) -> None:
        artifacts = storage.refs_in(self).artifacts
        log_group = logs.LogGroup(
            self, "TemplateWriterLogs", retention=logs.RetentionDays.ONE_YEAR, removal_policy=RemovalPolicy.DESTROY
        )
        role = iam.Role(
            self,
            "TemplateWriterRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="Writes the Panorama manifest template into the artifacts bucket",
        )
        log_group.grant_write(role)
        artifacts.grant_put(role, MANIFEST_TEMPLATE_KEY)
        function = lambda_.Function(
            self,
            "TemplateWriter",
            runtime=RUNTIME,
            handler=handler_path("manifest_template", "handler"),
            code=handler_code(),
            role=role,
            log_group=log_group,
            timeout=Duration.seconds(60),
            memory_size=128,
            description="CloudFormation custom resource: stores the Panorama manifest template",
        )
        self.manifest_template = CustomResource(
            self,
            "ManifestTemplate",
            service_token=function.function_arn,
            resource_type="Custom::PanoramaManifestTemplate",
            properties={
                "Bucket": artifacts.bucket_name,
                "Key": MANIFEST_TEMPLATE_KEY,
                "Body": Fn.sub(manifest_template(self.spec)),
            },
        )
        acknowledge(
            role,
            "AwsSolutions-IAM5",
            "grant_put on the one manifest-template key of the pipeline's artifacts bucket, and the "
            "KMS data-key actions that writing to that KMS-encrypted bucket needs; log streams of the "
            "function's own log group",
            findings=("Action::s3:Abort*", "Action::kms:GenerateDataKey*", "Action::kms:ReEncrypt*"),
        )

    def _device_alarms(self, device: DeviceConfig, topic: sns.ITopic) -> None:
        """ApplicationErrors of this device's instance and DeviceActive of the device itself.

        Panorama publishes both with two dimensions, one of which (instance id, or the device id
        or name not in the config) is unknown here, so the alarms use Metrics Insights queries.
        """
        instance = self.spec.instance_name(device.key)
        device_filter = f"DeviceId = '{device.id}'" if device.id else f"DeviceName = '{device.name}'"
        checks = (
            (
                "ApplicationErrors",
                "SELECT SUM(ApplicationErrors) FROM SCHEMA(PanoramaDeviceMetrics, ApplicationInstanceId, "
                f"ApplicationInstanceName) WHERE ApplicationInstanceName = '{instance}'",
                cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
                cloudwatch.TreatMissingData.NOT_BREACHING,
                f"the application {instance} reports errors",
            ),
            (
                "DeviceActive",
                "SELECT SUM(DeviceActive) FROM SCHEMA(PanoramaDeviceMetrics, DeviceId, DeviceName) "
                f"WHERE {device_filter}",
                cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
                cloudwatch.TreatMissingData.BREACHING,
                f"the appliance {device.key} is not active (offline or unreachable)",
            ),
        )
        for metric, query, comparison, missing, what in checks:
            alarm = cloudwatch.Alarm(
                self,
                f"{metric}-{device.key}",
                alarm_description=f"Panorama: {what} for 5 minutes",
                metric=cloudwatch.MathExpression(expression=query, period=Duration.minutes(1), using_metrics={}),
                threshold=1,
                evaluation_periods=5,
                datapoints_to_alarm=5,
                comparison_operator=comparison,
                treat_missing_data=missing,
            )
            alarm.add_alarm_action(actions.SnsAction(topic))
            alarm.add_ok_action(actions.SnsAction(topic))
