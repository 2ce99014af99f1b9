"""The roles through which the delivery pipeline acts inside an environment's account.

The pipeline's CodeBuild steps run in the toolchain account. After a stage deploys, one step
registers the code package and one checks the stage (and may start a smoke run); each assumes its
own role here, trusted only for the step role of that name in the toolchain account
(``aws:PrincipalArn``, so recreating the pipeline does not break the trust) and holding only what
its command calls. The stack exists only in stages of the delivery pipeline, so the three stacks
that ``cdk deploy '**'`` deploys stay the same with or without it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from aws_cdk import ArnFormat, Stack
from aws_cdk import aws_iam as iam
from constructs import Construct

from panopipe.config import EnvironmentConfig
from stacks.steps.step_spec import ANY_PACKAGE, Allow, Permission, apply_permissions, write_package_storage


@dataclass(frozen=True)
class DeliveryAccess:
    """Who may assume the roles: the toolchain account and its step roles' names, per purpose."""

    toolchain_account: str
    register_step_role: str
    verify_step_role: str


def register_role_name(prefix: str) -> str:
    """The role the code-package step assumes in ``prefix``'s account."""
    return f"{prefix}-delivery-code-package"


def verify_role_name(prefix: str) -> str:
    """The role the stage check assumes in ``prefix``'s account."""
    return f"{prefix}-delivery-verify"


class DeliveryAccessStack(Stack):
    """Two roles: register the code package, verify the stage."""

    def __init__(
        self, scope: Construct, construct_id: str, *, config: EnvironmentConfig, access: DeliveryAccess, **kwargs: Any
    ) -> None:
        super().__init__(
            scope,
            construct_id,
            description=f"panorama-pipeline {config.environment}: roles of the delivery pipeline's checks",
            **kwargs,
        )
        self.config = config
        self.access = access
        self.register_role = self._role(
            register_role_name(config.prefix), access.register_step_role, self._register_permissions()
        )
        self.verify_role = self._role(
            verify_role_name(config.prefix), access.verify_step_role, self._verify_permissions()
        )

    def _role(self, name: str, step_role: str, permissions: Sequence[Permission]) -> iam.Role:
        step_role_arn = f"arn:{self.partition}:iam::{self.access.toolchain_account}:role/{step_role}"
        role = iam.Role(
            self,
            name.removeprefix(f"{self.config.prefix}-").title().replace("-", ""),
            role_name=name,
            description=f"{self.config.prefix}: assumed by the delivery pipeline's step {step_role}",
            assumed_by=iam.AccountPrincipal(self.access.toolchain_account).with_conditions(
                {"ArnEquals": {"aws:PrincipalArn": step_role_arn}}
            ),
        )
        apply_permissions(role, permissions, name)
        return role

    def _arn(self, service: str, resource: str, name: str, sep: ArnFormat = ArnFormat.COLON_RESOURCE_NAME) -> str:
        return self.format_arn(service=service, resource=resource, resource_name=name, arn_format=sep)

    def _register_permissions(self) -> Sequence[Permission]:
        artifacts = self.config.bucket_name("artifacts")
        return (
            Allow(
                "RegisterCodePackage",
                (
                    "panorama:DescribePackage",
                    "panorama:RegisterPackageVersion",
                    "panorama:DescribePackageVersion",
                    "panorama:DeregisterPackageVersion",
                ),
                (self._arn("panorama", "package", "*", ArnFormat.SLASH_RESOURCE_NAME),),
                ANY_PACKAGE,
            ),
            Allow(
                "CreatePackage",
                ("panorama:CreatePackage",),
                ("*",),
                "panorama:CreatePackage has no resource-level permission (Service Authorization Reference)",
            ),
            write_package_storage(self),
            Allow("ListArtifacts", ("s3:ListBucket",), (f"arn:{self.partition}:s3:::{artifacts}",)),
            Allow(
                "ReadLastGoodPins",
                ("s3:GetObject",),
                (f"arn:{self.partition}:s3:::{artifacts}/deployments/*",),
                "the code patch versions a device's last-good deployment pins are never deregistered "
                "(one object per device under this prefix)",
            ),
            Allow(
                "PackageHistory",
                ("s3:GetObject", "s3:PutObject"),
                (f"arn:{self.partition}:s3:::{artifacts}/panorama/package-history/*",),
                "the registered patch versions of each package (what is trimmed), one object per package "
                "under this prefix, as the pipeline's RegisterPackage step keeps them",
            ),
            Allow(
                "UseArtifactsKey",
                ("kms:Decrypt", "kms:GenerateDataKey"),
                (self._arn("kms", "key", "*", ArnFormat.SLASH_RESOURCE_NAME),),
                "the artifacts bucket's key is in the storage stack; the condition names it by its alias, "
                "so no cross-stack reference ties this stack to the stateful one",
                conditions={"ForAnyValue:StringEquals": {"kms:ResourceAliases": f"alias/{self.config.prefix}-data"}},
            ),
        )

    def _verify_permissions(self) -> Sequence[Permission]:
        machine = f"{self.config.prefix}-pipeline"
        buckets = tuple(
            f"arn:{self.partition}:s3:::{self.config.bucket_name(p)}" for p in ("data", "artifacts", "logs")
        )
        return (
            Allow(
                "StateMachine",
                ("states:DescribeStateMachine", "states:StartExecution"),
                (self._arn("states", "stateMachine", machine),),
            ),
            Allow(
                "SmokeRuns",
                ("states:DescribeExecution", "states:GetExecutionHistory"),
                (self._arn("states", "execution", f"{machine}:*"),),
                "a smoke run's execution is named at run time; only the executions of this state machine",
            ),
            Allow("Buckets", ("s3:ListBucket", "s3:GetBucketVersioning"), buckets),
        )
