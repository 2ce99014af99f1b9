"""The stateful stack: data, artifacts and access-log buckets with their KMS key.

Everything here is retained when a stack is deleted and outlives every update; the other stacks
receive the bucket and key objects (:meth:`Storage.refs_in`). The stack holds one construct on
purpose: the construct's id is part of every logical id of these stateful resources, and a logical
id that changes would replace a bucket.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aws_cdk import CfnOutput, Duration, Fn, RemovalPolicy, Stack
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from panopipe.config import EnvironmentConfig
from stacks.log_groups import allow_log_encryption


def _name(template: str) -> str:
    """A literal name, or ``Fn::Sub`` when it holds the account/region pseudo parameters."""
    return Fn.sub(template) if "${" in template else template


@dataclass(frozen=True)
class BucketRefs:
    """The pipeline's buckets as seen from another stack (see :meth:`Storage.refs_in`)."""

    data: s3.IBucket
    artifacts: s3.IBucket


class Storage(Construct):
    """Versioned, KMS-encrypted, TLS-only, private buckets that outlive every stack update.

    Construct ids here fix the logical ids of stateful resources: never rename them.
    """

    def __init__(self, scope: Construct, construct_id: str, *, config: EnvironmentConfig) -> None:
        super().__init__(scope, construct_id)
        prefix = config.prefix
        retention = config.storage
        self._names = {purpose: config.bucket_name(purpose) for purpose in ("data", "artifacts")}

        self.key = kms.Key(
            self,
            "DataKey",
            alias=f"alias/{prefix}-data",
            description=f"{prefix}: encrypts training data and model artifacts",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.RETAIN,
        )

        # S3 server access logging cannot write to SSE-KMS buckets, so this one uses SSE-S3.
        self.access_logs_bucket = self._bucket(
            "AccessLogsBucket",
            config.bucket_name("logs"),
            s3.LifecycleRule(
                id="expire-access-logs",
                expiration=Duration.days(retention.access_log_days),
                noncurrent_version_expiration=Duration.days(1),
                abort_incomplete_multipart_upload_after=Duration.days(1),
            ),
            s3.LifecycleRule(id="remove-expired-delete-markers", expired_object_delete_marker=True),
        )
        allow_log_encryption(self.key, prefix)  # the other stacks' log groups use this key
        self.data_bucket = self._bucket(
            "DataBucket",
            self._names["data"],
            s3.LifecycleRule(id="abort-incomplete-uploads", abort_incomplete_multipart_upload_after=Duration.days(7)),
            logs_prefix="data/",
        )
        self._send_events_to_eventbridge(self.data_bucket)
        self.artifacts_bucket = self._bucket(
            "ArtifactsBucket",
            self._names["artifacts"],
            s3.LifecycleRule(
                id="expire-old-artifact-versions",
                noncurrent_version_expiration=Duration.days(retention.noncurrent_version_days),
                abort_incomplete_multipart_upload_after=Duration.days(7),
                expired_object_delete_marker=True,
            ),
            logs_prefix="artifacts/",
        )

    def _bucket(
        self, construct_id: str, name: str, *lifecycle: s3.LifecycleRule, logs_prefix: str | None = None
    ) -> s3.Bucket:
        """A versioned, private, TLS 1.2+ only, retained bucket.

        With ``logs_prefix`` it is encrypted with the pipeline key and logs to the access-log
        bucket; without, it is the access-log bucket itself (SSE-S3; delivery is granted by bucket
        policy under the ``serverAccessLogsUseBucketPolicy`` flag, by ACL without it).
        """
        encrypted_with_key = logs_prefix is not None
        return s3.Bucket(
            self,
            construct_id,
            bucket_name=_name(name),
            encryption=s3.BucketEncryption.KMS if encrypted_with_key else s3.BucketEncryption.S3_MANAGED,
            encryption_key=self.key if encrypted_with_key else None,
            bucket_key_enabled=True if encrypted_with_key else None,
            server_access_logs_bucket=self.access_logs_bucket if encrypted_with_key else None,
            server_access_logs_prefix=logs_prefix,
            lifecycle_rules=list(lifecycle),
            versioned=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            removal_policy=RemovalPolicy.RETAIN,
        )

    def bucket_name(self, purpose: str) -> str:
        """The name (an ``Fn::Sub`` template when account or region is open) of a bucket."""
        return self._names[purpose]

    def refs_in(self, scope: Construct) -> BucketRefs:
        """The data and artifacts buckets for use (grants) in another stack.

        Bucket names are deterministic (one naming helper), so other stacks address the buckets
        by name rather than by cross-stack ARN tokens: IAM policies then show the real bucket
        name and their cdk-nag findings are stable strings. The KMS key is still a reference,
        which also orders the deployment after this stack.
        """
        return BucketRefs(
            data=s3.Bucket.from_bucket_attributes(
                scope, "DataBucketRef", bucket_name=_name(self._names["data"]), encryption_key=self.key
            ),
            artifacts=s3.Bucket.from_bucket_attributes(
                scope,
                "ArtifactsBucketRef",
                bucket_name=_name(self._names["artifacts"]),
                encryption_key=self.key,
            ),
        )

    @staticmethod
    def _send_events_to_eventbridge(bucket: s3.Bucket) -> None:
        """Turn on EventBridge delivery in the bucket's own properties.

        The L2 ``event_bridge_enabled`` flag does this through a Node.js custom resource (one more
        function and role per stack); the CloudFormation property does the same natively.
        """
        cfn_bucket = bucket.node.default_child
        assert isinstance(cfn_bucket, s3.CfnBucket)
        cfn_bucket.notification_configuration = s3.CfnBucket.NotificationConfigurationProperty(
            event_bridge_configuration=s3.CfnBucket.EventBridgeConfigurationProperty(event_bridge_enabled=True)
        )


class StorageStack(Stack):
    """The stateful stack: :class:`Storage`, retained, with termination protection outside dev."""

    def __init__(self, scope: Construct, construct_id: str, *, config: EnvironmentConfig, **kwargs: Any) -> None:
        super().__init__(
            scope,
            construct_id,
            termination_protection=config.protect_stateful,
            description=f"panorama-pipeline {config.environment}: data and artifact storage (stateful)",
            **kwargs,
        )
        self.storage = Storage(self, "Storage", config=config)
        #: The bucket-name outputs by output id (a delivery stage's check reads them).
        self.outputs = {
            name: CfnOutput(
                self, name, value=bucket.bucket_name, description="where the pipeline's data and artifacts are"
            )
            for name, bucket in (
                ("DataBucketName", self.storage.data_bucket),
                ("ArtifactsBucketName", self.storage.artifacts_bucket),
                ("AccessLogsBucketName", self.storage.access_logs_bucket),
            )
        }
