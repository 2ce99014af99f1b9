"""What a pipeline step is on the infrastructure side: its handler, variables, limits and IAM.

A :class:`StepSpec` names the imported handler function (an editor follows it to
``lambda_handlers/<module>.py``), the environment variables its function gets, its timeout and
memory, and its permissions, built from the :class:`StepResources` it may use. Its state name is
derived from the handler (``check_deployment`` runs as ``CheckDeployment``). The state machine
construct (``state_machine.py``) makes one function and one least-privilege role per spec.

Each spec lives in ``<handler module>_spec.py`` beside this file; permissions that several steps
share are the functions at the end of this module.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aws_cdk import ArnFormat, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from lambda_handlers.step import state_name
from panopipe.config import EnvironmentConfig
from stacks.lambda_code import handler_path
from stacks.nag import acknowledge, wildcard_findings

#: Wildcard actions that ``grant_read`` / ``grant_encrypt_decrypt`` write.
GRANT_READ_ACTIONS = ("s3:GetBucket*", "s3:GetObject*", "s3:List*")
KMS_WRITE_ACTIONS = ("kms:ReEncrypt*", "kms:GenerateDataKey*")


@dataclass(frozen=True)
class Allow:
    """One IAM statement, and why any wildcard in it cannot be narrower.

    ``why`` acknowledges exactly the statement's cdk-nag findings; an unexplained wildcard is refused.
    """

    sid: str
    actions: tuple[str, ...]
    resources: tuple[str, ...]
    why: str = ""
    conditions: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Grant:
    """A CDK ``grant_*`` call, and the wildcard actions and resources it writes (acknowledged with ``why``)."""

    apply: Callable[[iam.IGrantable], object]
    actions: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()
    why: str = ""


Permission = Allow | Grant


@dataclass(frozen=True)
class StepResources:
    """What a step's permissions and variables may refer to: this environment's constructs."""

    scope: Construct
    config: EnvironmentConfig
    data: s3.IBucket
    artifacts: s3.IBucket
    key: kms.IKey
    sagemaker_role: iam.IRole
    runtime_role: iam.IRole
    topic: sns.ITopic
    manifest_template_key: str
    model_package: str
    code_package: str
    training_image: str
    training_source: s3_assets.Asset | None = None
    state_machine: sfn.IStateMachine | None = None
    #: The data preparation step (``preparation.enabled``): its image URI and the script's file asset.
    processing_image: str | None = None
    preparation_script: s3_assets.Asset | None = None

    @property
    def prefix(self) -> str:
        """``<project>-<env>``: job names, and the state machine's name, start with it."""
        return self.config.prefix

    @property
    def state_machine_name(self) -> str:
        """The state machine's name (known before it exists)."""
        return f"{self.prefix}-pipeline"

    def arn(self, service: str, resource: str, name: str = "*", region: bool = True) -> str:
        """``arn:<partition>:<service>:<region>:<account>:<resource>/<name>`` in this stack."""
        return Stack.of(self.scope).format_arn(
            service=service,
            resource=resource,
            arn_format=ArnFormat.SLASH_RESOURCE_NAME,
            resource_name=name,
            region=None if region else "",
        )

    def own_jobs(self, resource: str, kind: str) -> str:
        """ARN pattern of this environment's SageMaker jobs of one kind (``<prefix>-<kind>-*``)."""
        return self.arn("sagemaker", resource, f"{self.prefix}-{kind}-*")


@dataclass(frozen=True)
class StepSpec:
    """One Lambda-backed step."""

    handler: Callable[..., Any]
    description: str
    variables: tuple[str, ...] = ()
    permissions: Callable[[StepResources], Sequence[Permission]] = field(default=lambda resources: ())
    timeout_seconds: int = 60
    memory: int = 256

    @property
    def id(self) -> str:
        """The state's name and the construct ids' stem, derived from the handler's name."""
        return state_name(self.handler)

    @property
    def handler_path(self) -> str:
        """The Lambda ``handler`` setting."""
        return handler_path(self.handler)


def apply_permissions(role: iam.IRole, permissions: Sequence[Permission], owner: str) -> None:
    """Add ``permissions`` to ``role``; acknowledge exactly the cdk-nag wildcards each one explains.

    ``owner`` names the role's user (a step, a delivery step) in the error for an unexplained wildcard.
    """
    for permission in permissions:
        if isinstance(permission, Grant):
            permission.apply(role)
            findings = wildcard_findings(role, permission.actions, permission.resources)
            reason = permission.why
        else:
            statement = iam.PolicyStatement(
                sid=permission.sid,
                actions=list(permission.actions),
                resources=list(permission.resources),
                conditions=dict(permission.conditions) if permission.conditions else None,
            )
            role.add_to_principal_policy(statement)
            findings = wildcard_findings(role, permission.actions, permission.resources)
            reason = f"{permission.sid}: {permission.why}"
            if findings and not permission.why:
                raise ValueError(f"{owner}: statement {permission.sid} has wildcards {findings}: say why")
        if findings:
            acknowledge(role, "AwsSolutions-IAM5", reason, findings)


# --- permissions several steps share --------------------------------------------------------------

OWN_JOBS = "job names are derived from each run's name, always under this environment's own prefix"
ANY_PACKAGE = "packages are created by name at run time (their ids are not known at synth)"
ANY_INSTANCE = "application instance ids are assigned by Panorama at run time, so no narrower ARN exists"
PER_RUN = "one manifest object per run and device, under this prefix of the pipeline's artifacts bucket"
PER_DEVICE = "one last-good manifest per device, under this prefix of the pipeline's artifacts bucket"


def pass_role(role: iam.IRole, service: str) -> Allow:
    """``iam:PassRole`` for exactly one role, to exactly one service."""
    return Allow(
        "PassRoleToService",
        ("iam:PassRole",),
        (role.role_arn,),
        conditions={"StringEquals": {"iam:PassedToService": service}},
    )


def read_models(r: StepResources) -> Allow:
    """Read a model archive anywhere in the pipeline's data or artifacts bucket."""
    return Allow(
        "ReadModels",
        ("s3:GetObject",),
        (r.data.arn_for_objects("*"), r.artifacts.arn_for_objects("*")),
        "a model (given, or a training job's output) may be any object of the pipeline's data or "
        "artifacts bucket; read only",
    )


def write_package_storage(stack: Stack) -> Allow:
    """Write assets and manifests to a Panorama package's storage location (an S3 access point)."""
    return Allow(
        "WritePackageStorage",
        ("s3:PutObject", "s3:PutObjectAcl", "s3:GetObject"),
        (
            f"arn:{stack.partition}:s3:{stack.region}:*:accesspoint/*",
            f"arn:{stack.partition}:s3:{stack.region}:*:accesspoint/*/object/*",
        ),
        "a package's storage location is an S3 access point that Panorama owns and names in "
        "DescribePackage/CreatePackage at run time",
    )


def list_artifacts(r: StepResources) -> Allow:
    """List the artifacts bucket (so a missing object reads as NoSuchKey, not AccessDenied)."""
    return Allow("ListArtifacts", ("s3:ListBucket",), (r.artifacts.bucket_arn,))


def write_encrypted(r: StepResources) -> Grant:
    """Use the artifacts bucket's key to write SSE-KMS objects there."""
    return Grant(
        r.key.grant_encrypt_decrypt,
        KMS_WRITE_ACTIONS,
        why="grant_encrypt_decrypt on the artifacts bucket key only, to write SSE-KMS objects in that bucket",
    )


def start_sagemaker_job(
    r: StepResources, sid: str, kind: str, jobs: str, asset: s3_assets.Asset | None, stage_sid: str, what: str
) -> list[Permission]:
    """Create and describe this environment's ``kind`` jobs (``jobs``: their ARN pattern); pass the role.

    With ``asset`` (a CDK asset holding ``what``), also read it and stage one copy per asset hash
    under ``code/`` in the artifacts bucket, where the job reads it.
    """
    found: list[Permission] = [Allow(sid, (f"sagemaker:Create{kind}", f"sagemaker:Describe{kind}"), (jobs,), OWN_JOBS)]
    if asset is not None:
        found += [
            Grant(
                asset.grant_read,
                GRANT_READ_ACTIONS,
                (asset.bucket.arn_for_objects("*"),),
                f"grant_read on the CDK asset that holds {what} (copied to artifacts)",
            ),
            Allow(
                stage_sid,
                ("s3:GetObject", "s3:PutObject"),
                (r.artifacts.arn_for_objects("code/*"),),
                f"one copy of {what} per asset hash, under code/ in the artifacts bucket",
            ),
            list_artifacts(r),
            write_encrypted(r),
        ]
    found.append(pass_role(r.sagemaker_role, "sagemaker.amazonaws.com"))
    return found


def create_instances(r: StepResources) -> Sequence[Permission]:
    """Create (replacing) and tag application instances; list a device's instances."""
    return (
        Allow(
            "CreateApplicationInstance",
            ("panorama:CreateApplicationInstance", "panorama:ListApplicationInstances"),
            ("*",),
            "CreateApplicationInstance and ListApplicationInstances have no resource-level "
            "permission (Service Authorization Reference)",
        ),
        Allow(
            "TagApplicationInstance",
            ("panorama:TagResource",),
            (r.arn("panorama", "applicationInstance"),),
            ANY_INSTANCE,
        ),
    )


def describe_instances(r: StepResources) -> Allow:
    """DescribeApplicationInstance of any instance (ids are assigned at run time)."""
    return Allow(
        "DescribeApplicationInstance",
        ("panorama:DescribeApplicationInstance",),
        (r.arn("panorama", "applicationInstance"),),
        ANY_INSTANCE,
    )


def write_run_manifests(r: StepResources) -> Allow:
    """Write what a run sends to each device, under ``runs/``."""
    return Allow("WriteRunManifests", ("s3:PutObject",), (r.artifacts.arn_for_objects("runs/*"),), PER_RUN)


def hold_lock(r: StepResources) -> Allow:
    """Read and conditionally rewrite the environment's deployment lock (``deployment_lock.py``).

    Goes with :func:`list_artifacts` (a missing lock reads as NoSuchKey, not AccessDenied) and
    :func:`write_encrypted` (the object is SSE-KMS).
    """
    from lambda_handlers.deployment_lock import LOCK_KEY

    return Allow("DeploymentLock", ("s3:GetObject", "s3:PutObject"), (r.artifacts.arn_for_objects(LOCK_KEY),))


def lock_only(r: StepResources) -> tuple[Permission, ...]:
    """A step whose only resource is the deployment lock."""
    return (hold_lock(r), list_artifacts(r), write_encrypted(r))
