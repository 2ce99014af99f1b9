"""The Panorama application's cloud side: its two packages and its manifest template.

Application instances are not CloudFormation resources here: ``AWS::Panorama::ApplicationInstance``
is replaced on any change, so the pipeline creates and replaces instances itself (its deploy step
reads the template this construct stores); their alarms are the pipeline's (``monitoring.py``).
"""

from __future__ import annotations

import json

from aws_cdk import CustomResource, Fn
from aws_cdk import aws_panorama as panorama
from constructs import Construct

from lambda_handlers import manifest_template as template_writer
from panopipe.config import EnvironmentConfig
from panopipe.config.panorama_spec import application_spec
from panorama_app.manifest import documents
from panorama_app.manifest.spec import ApplicationSpec
from stacks.lambda_code import python_function
from stacks.nag import acknowledge
from stacks.storage import Storage

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
    """Model and code packages, and the stored manifest template."""

    def __init__(self, scope: Construct, construct_id: str, *, config: EnvironmentConfig, storage: Storage) -> None:
        super().__init__(scope, construct_id)
        self.spec = application_spec(config)
        self.model_package = panorama.CfnPackage(self, "ModelPackage", package_name=self.spec.model_package)
        self.code_package = panorama.CfnPackage(self, "CodePackage", package_name=self.spec.code_package)
        self.manifest_template_key = MANIFEST_TEMPLATE_KEY
        self._store_manifest_template(config, storage)

    def _store_manifest_template(self, config: EnvironmentConfig, storage: Storage) -> None:
        artifacts = storage.refs_in(self).artifacts
        function = python_function(
            self,
            "TemplateWriter",
            handler=template_writer.on_event,
            description="CloudFormation custom resource: stores the Panorama manifest template",
            role_description="Writes the Panorama manifest template into the artifacts bucket",
            prefix=config.prefix,
            log_key=storage.key,
            memory=128,
        )
        role = function.role
        assert role is not None
        artifacts.grant_put(role, MANIFEST_TEMPLATE_KEY)
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
