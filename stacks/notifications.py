"""The pipeline's SNS topic: KMS-encrypted, TLS-only, with an optional e-mail subscription."""

from __future__ import annotations

from aws_cdk import Aws
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from panopipe.config import EnvironmentConfig


class Notifications(Construct):
    """Where alarms and pipeline runs report. Its own key: CloudWatch must be allowed to use it."""

    def __init__(self, scope: Construct, construct_id: str, *, config: EnvironmentConfig) -> None:
        super().__init__(scope, construct_id)
        prefix = config.prefix
        self.key = kms.Key(
            self,
            "TopicKey",
            alias=f"alias/{prefix}-notifications",
            description=f"{prefix}: encrypts pipeline notifications",
            enable_key_rotation=True,
        )
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowCloudWatchAlarmsToPublish",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],  # in a key policy, "*" is this key
                conditions={"StringEquals": {"aws:SourceAccount": Aws.ACCOUNT_ID}},
            )
        )
        self.topic = sns.Topic(
            self,
            "Topic",
            topic_name=f"{prefix}-notifications",
            display_name=f"panorama-pipeline {config.environment}",
            master_key=self.key,
            enforce_ssl=True,
        )
        if config.notification_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(config.notification_email))
