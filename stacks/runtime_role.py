"""The role the Panorama application assumes on the appliance (its ``RuntimeRoleArn``).

Trusts ``panorama.amazonaws.com`` (this account only), lives under ``/service-role/``, and may only
publish the application's metrics to its own CloudWatch namespace.
"""

from __future__ import annotations

from aws_cdk import aws_iam as iam
from constructs import Construct

from panopipe.config import EnvironmentConfig
from stacks.nag import acknowledge
from stacks.sagemaker_role import service_principal


def panorama_runtime_role(scope: Construct, config: EnvironmentConfig) -> iam.Role:
    """The application instances' runtime role."""
    role = iam.Role(
        scope,
        "PanoramaRuntimeRole",
        role_name=f"{config.prefix}-panorama-runtime",
        path="/service-role/",
        assumed_by=service_principal("panorama.amazonaws.com"),
        description="Assumed by the Panorama application on the appliance (RuntimeRoleArn)",
    )
    role.add_to_policy(
        iam.PolicyStatement(
            sid="PublishAppMetrics",
            actions=["cloudwatch:PutMetricData"],
            resources=["*"],
            conditions={"StringEquals": {"cloudwatch:namespace": config.metrics_namespace}},
        )
    )
    acknowledge(
        role,
        "AwsSolutions-IAM5",
        "cloudwatch:PutMetricData has no resource-level permission; the statement is limited "
        "to the application's metric namespace by a cloudwatch:namespace condition",
        findings=("Resource::*",),
    )
    return role
