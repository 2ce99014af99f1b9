"""Log groups of the project's functions and state machine, encrypted with the project's key.

Named under ``/<prefix>/``, encrypted with the storage stack's KMS key, kept a year.

CloudWatch Logs encrypts with a customer key only if the key policy lets the Region's Logs service
principal use it; :func:`allow_log_encryption` adds that statement to the key, scoped by the
encryption context CloudWatch Logs sends (the log group's ARN) to this project's log groups.
"""

from __future__ import annotations

from aws_cdk import Fn, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct


def log_group_name(prefix: str, name: str) -> str:
    """``/<prefix>/<name>``: every log group of one environment under one path."""
    return f"/{prefix}/{name}"


def log_group_arns(prefix: str) -> str:
    """An ``Fn::Sub`` template of the ARNs of every log group of the environment."""
    return f"arn:${{AWS::Partition}}:logs:${{AWS::Region}}:${{AWS::AccountId}}:log-group:{log_group_name(prefix, '*')}"


def encrypted_log_group(scope: Construct, construct_id: str, *, prefix: str, name: str, key: kms.IKey) -> logs.LogGroup:
    """A log group of the environment, encrypted with ``key``."""
    return logs.LogGroup(
        scope,
        construct_id,
        log_group_name=log_group_name(prefix, name),
        encryption_key=key,
        retention=logs.RetentionDays.ONE_YEAR,
        removal_policy=RemovalPolicy.DESTROY,
    )


def allow_log_encryption(key: kms.Key, prefix: str) -> None:
    """Let CloudWatch Logs of this Region use ``key`` for this environment's log groups only."""
    key.add_to_resource_policy(
        iam.PolicyStatement(
            sid="AllowCloudWatchLogsForThisEnvironment",
            principals=[iam.ServicePrincipal(Fn.sub("logs.${AWS::Region}.amazonaws.com"))],
            actions=["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
            resources=["*"],  # in a key policy, "*" is this key
            conditions={"ArnLike": {"kms:EncryptionContext:aws:logs:arn": Fn.sub(log_group_arns(prefix))}},
        )
    )
