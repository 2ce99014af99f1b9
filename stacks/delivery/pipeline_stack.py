"""The delivery stack: a self-mutating CDK Pipelines pipeline that deploys every environment in order.

Source (a CodeStar connection or CodeCommit) → Synth (the README's test command, then ``cdk synth``
of this app with the pinned CLI) → UpdatePipeline (self-mutation) → Assets → CodePackage (an ARM64,
privileged CodeBuild step that builds the on-device application's container, only when
``panorama_app/`` changed) → one stage per environment, in the delivery file's order: an optional
manual approval, the same three stacks ``cdk deploy '**'`` deploys (plus the roles of the checks),
then the code package registered in that account and the stage checked (and, if asked, a smoke run).
"""

from __future__ import annotations

from typing import Any

from aws_cdk import Duration, RemovalPolicy, Stack, pipelines
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_codecommit as codecommit
from aws_cdk import aws_codepipeline as codepipeline
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from panopipe.config.delivery import Delivery, DeliveryStage
from panopipe.stage_check import OUTPUT_VARIABLES
from stacks.delivery import commands
from stacks.delivery.access import DeliveryAccess, register_role_name, verify_role_name
from stacks.nag import acknowledge, rendered
from stacks.stage import EnvironmentStage
from stacks.steps.step_spec import KMS_WRITE_ACTIONS

#: Where the built code package is kept in the artifact bucket, by the hash of its sources.
CODE_PACKAGE_CACHE = "code-package-cache/"
#: Python and Node.js of the CodeBuild images (the README's requirements: Python 3.11+, Node.js 20).
RUNTIMES = {"python": "3.11", "nodejs": "20"}
#: What CDK Pipelines grants on its artifact bucket (``grant_read_write``).
ARTIFACT_BUCKET_ACTIONS = ("s3:Abort*", "s3:DeleteObject*", "s3:GetBucket*", "s3:GetObject*", "s3:List*")
#: The test suite and synth: 4 vCPU, 7 GB (the suite runs in about 5 minutes on 2 cores).
SYNTH_COMPUTE = codebuild.ComputeType.MEDIUM


def _runtime_spec() -> codebuild.BuildSpec:
    return codebuild.BuildSpec.from_object({"phases": {"install": {"runtime-versions": RUNTIMES}}})


class DeliveryStack(Stack):
    """The pipeline, its encrypted artifact bucket (with the code package cache) and the step roles."""

    def __init__(self, scope: Construct, construct_id: str, *, delivery: Delivery, **kwargs: Any) -> None:
        toolchain = delivery.toolchain
        super().__init__(
            scope,
            construct_id,
            description=f"panorama-pipeline delivery: {delivery.name}, push to deploy ({len(delivery.stages)} stages)",
            env={"account": toolchain.account, "region": toolchain.region},
            **kwargs,
        )
        self.delivery = delivery
        self.key = kms.Key(
            self,
            "ArtifactsKey",
            alias=f"alias/{delivery.name}-delivery-artifacts",
            description=f"{delivery.name} delivery: encrypts the pipeline's artifacts across accounts",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.logs_bucket = self._bucket("AccessLogsBucket", "logs")
        self.artifact_bucket = self._bucket("ArtifactsBucket", "artifacts")
        self.source = self._source()
        self.pipeline = pipelines.CodePipeline(
            self,
            "Pipeline",
            pipeline_name=f"{delivery.name}-delivery",
            synth=pipelines.ShellStep(
                "Synth",
                input=self.source,
                commands=[commands.TEST_COMMAND, commands.synth(delivery.path)],
                primary_output_directory="cdk.out",
            ),
            artifact_bucket=self.artifact_bucket,
            cross_account_keys=True,
            enable_key_rotation=True,
            self_mutation=True,
            cli_version=delivery.cdk_cli_version,
            publish_assets_in_parallel=False,
            code_build_defaults=pipelines.CodeBuildOptions(
                build_environment=codebuild.BuildEnvironment(build_image=codebuild.LinuxBuildImage.STANDARD_7_0),
                partial_build_spec=_runtime_spec(),
            ),
            synth_code_build_defaults=pipelines.CodeBuildOptions(
                build_environment=codebuild.BuildEnvironment(compute_type=SYNTH_COMPUTE),
                timeout=Duration.minutes(60),
            ),
        )
        self.build_step = self._build_step()
        self.pipeline.add_wave("CodePackage", pre=[self.build_step])
        #: The environments' stages, in the pipeline's order.
        self.environment_stages: list[EnvironmentStage] = []
        for stage in delivery.stages:
            self._add_stage(stage)
        self.pipeline.build_pipeline()
        self._sub_action_role_arns()
        self._acknowledge()

    # --- resources --------------------------------------------------------------------------------

    def _bucket(self, construct_id: str, purpose: str) -> s3.Bucket:
        """A private, TLS-only, versioned bucket; the artifact bucket is KMS-encrypted and logs access."""
        artifacts = purpose == "artifacts"
        return s3.Bucket(
            self,
            construct_id,
            bucket_name=self.delivery.bucket_name(purpose),
            encryption=s3.BucketEncryption.KMS if artifacts else s3.BucketEncryption.S3_MANAGED,
            encryption_key=self.key if artifacts else None,
            bucket_key_enabled=True if artifacts else None,
            server_access_logs_bucket=self.logs_bucket if artifacts else None,
            server_access_logs_prefix="artifacts/" if artifacts else None,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-old-versions",
                    noncurrent_version_expiration=Duration.days(30),
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                    expiration=None if artifacts else Duration.days(365),
                )
            ],
            versioned=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            removal_policy=RemovalPolicy.RETAIN,
        )

    def _source(self) -> pipelines.CodePipelineSource:
        source = self.delivery.settings.source
        if source.codecommit is not None:
            repository = codecommit.Repository.from_repository_name(self, "Repository", source.codecommit)
            return pipelines.CodePipelineSource.code_commit(repository, source.branch)
        assert source.repository is not None and source.connection_arn is not None  # checked by the config
        return pipelines.CodePipelineSource.connection(
            source.repository, source.branch, connection_arn=source.connection_arn, trigger_on_push=True
        )

    def _step_role(self, construct_id: str, name: str, what: str) -> iam.Role:
        """A CodeBuild step's role, named so that the environments' accounts can trust exactly it."""
        return iam.Role(
            self,
            construct_id,
            role_name=name,
            description=f"{self.delivery.name} delivery: {what}",
            assumed_by=iam.ServicePrincipal("codebuild.amazonaws.com"),
        )

    # --- steps ------------------------------------------------------------------------------------

    def _build_step(self) -> pipelines.CodeBuildStep:
        """Build the arm64 container of ``panorama_app/`` (Docker: privileged), cached by its sources' hash."""
        cache = f"s3://{self.artifact_bucket.bucket_name}/{CODE_PACKAGE_CACHE}"
        self.build_step_role = self._step_role(
            "BuildCodePackageRole", f"{self.delivery.name}-cd-build-code-package", "builds the code package"
        )
        return pipelines.CodeBuildStep(
            "BuildCodePackage",
            role=self.build_step_role,
            input=self.source,
            commands=[commands.PYTHON_SETUP, commands.build_code_package(cache)],
            primary_output_directory=commands.CODE_PACKAGE_DIR,
            build_environment=codebuild.BuildEnvironment(
                build_image=codebuild.LinuxArmBuildImage.AMAZON_LINUX_2023_STANDARD_3_0,
                compute_type=codebuild.ComputeType.LARGE,
                privileged=True,
            ),
            role_policy_statements=[
                iam.PolicyStatement(
                    sid="CodePackageCache",
                    actions=["s3:GetObject", "s3:PutObject"],
                    resources=[self.artifact_bucket.arn_for_objects(f"{CODE_PACKAGE_CACHE}*")],
                ),
                iam.PolicyStatement(
                    sid="ListCodePackageCache",
                    actions=["s3:ListBucket"],
                    resources=[self.artifact_bucket.bucket_arn],
                    conditions={"StringLike": {"s3:prefix": [f"{CODE_PACKAGE_CACHE}*"]}},
                ),
            ],
            timeout=Duration.minutes(60),
        )

    def _add_stage(self, stage: DeliveryStage) -> pipelines.StageDeployment:
        config, entry = stage.config, stage.entry
        prefix = config.prefix
        register_role = self._step_role(
            f"{config.environment.title()}RegisterRole",
            f"{self.delivery.name}-cd-{config.environment}-code-package",
            f"registers the code package in {prefix}",
        )
        verify_role = self._step_role(
            f"{config.environment.title()}VerifyRole",
            f"{self.delivery.name}-cd-{config.environment}-verify",
            f"checks {prefix} after it deploys",
        )
        environment = EnvironmentStage(
            self,
            prefix,
            config=config,
            delivery_access=DeliveryAccess(self.account, register_role.role_name, verify_role.role_name),
        )
        target_role = f"arn:{self.partition}:iam::{stage.account}:role/"
        region = {"AWS_REGION": stage.region, "AWS_DEFAULT_REGION": stage.region}
        register = pipelines.CodeBuildStep(
            f"RegisterCodePackage-{config.environment}",
            input=self.source,
            additional_inputs={commands.CODE_PACKAGE_DIR: self.build_step},
            commands=[
                commands.PYTHON_SETUP,
                commands.register_code_package(stage.config_path, target_role + register_role_name(prefix)),
            ],
            env=region,
            role=register_role,
            role_policy_statements=[_assume(target_role + register_role_name(prefix))],
            timeout=Duration.minutes(config.runs.registration_timeout_seconds // 60 + 15),
        )
        smoke = entry.smoke_run
        outputs = {variable: environment.outputs[output] for variable, output in OUTPUT_VARIABLES.items()}
        verify = pipelines.CodeBuildStep(
            f"Verify-{config.environment}",
            input=self.source,
            commands=[
                commands.PYTHON_SETUP,
                commands.verify_stage(
                    target_role + verify_role_name(prefix),
                    smoke.model if smoke else None,
                    smoke.timeout_minutes if smoke else None,
                ),
            ],
            env=region,
            env_from_cfn_outputs=outputs,
            role=verify_role,
            role_policy_statements=[_assume(target_role + verify_role_name(prefix))],
            timeout=Duration.minutes(15 + (smoke.timeout_minutes if smoke else 0)),
        )
        verify.add_step_dependency(register)
        pre: list[pipelines.Step] = []
        if entry.manual_approval:
            pre.append(
                pipelines.ManualApprovalStep(
                    f"Approve-{config.environment}",
                    comment=f"Deploy {prefix} to account {stage.account} ({stage.region})?",
                )
            )
        self.environment_stages.append(environment)
        return self.pipeline.add_stage(environment, pre=pre, post=[register, verify])

    def _sub_action_role_arns(self) -> None:
        """Write the CloudFormation actions' role ARNs as ``Fn::Sub`` rather than an empty-delimiter ``Fn::Join``.

        CDK Pipelines joins the partition into the environments' bootstrap role ARNs; cfn-lint
        (1.58) reports that form inside an action's configuration as an error (E3703, its I1022
        preference). The same ARN as ``Fn::Sub`` is what it asks for and what CloudFormation reads.
        """
        cfn_pipeline = self.pipeline.pipeline.node.default_child
        assert isinstance(cfn_pipeline, codepipeline.CfnPipeline)
        stages = self.resolve(cfn_pipeline.stages)
        for i, stage in enumerate(stages):
            for j, action in enumerate(stage["actions"]):
                role_arn = (action.get("configuration") or {}).get("RoleArn")
                if isinstance(role_arn, dict) and "Fn::Join" in role_arn:
                    cfn_pipeline.add_property_override(
                        f"Stages.{i}.Actions.{j}.Configuration.RoleArn", {"Fn::Sub": _as_sub(role_arn)}
                    )

    # --- cdk-nag --------------------------------------------------------------------------------

    def _acknowledge(self) -> None:
        """Name, finding by finding, why the policies CDK Pipelines writes hold wildcards."""
        bucket = rendered(self, self.artifact_bucket.bucket_arn)
        acknowledge(
            self,
            "AwsSolutions-IAM5",
            "CDK Pipelines grants each action and step read/write on the pipeline's own artifact bucket "
            "(the objects of its runs) and use of that bucket's key; bucket- and key-scoped",
            [f"Action::{a}" for a in (*ARTIFACT_BUCKET_ACTIONS, *KMS_WRITE_ACTIONS)] + [f"Resource::{bucket}/*"],
        )
        for project in self._projects():
            name = rendered(self, project.project_name)
            acknowledge(
                project.role or project,
                "AwsSolutions-IAM5",
                "CodeBuild writes the log streams and test reports of its own project only (the names are "
                "derived from the project's name)",
                [
                    f"Resource::arn:aws:logs:{self.region}:{self.account}:log-group:/aws/codebuild/{name}:*",
                    f"Resource::arn:aws:codebuild:{self.region}:{self.account}:report-group/{name}-*",
                ],
            )
        acknowledge(
            self.build_step_role,
            "AwsSolutions-IAM5",
            "the code package cache holds one asset per hash of panorama_app/'s sources, under this prefix",
            [f"Resource::{bucket}/{CODE_PACKAGE_CACHE}*"],
        )
        mutation = self.pipeline.node.find_child("UpdatePipeline").node.find_child("SelfMutation")
        acknowledge(
            mutation,
            "AwsSolutions-IAM5",
            "self-mutation (CDK Pipelines) assumes only the CDK bootstrap roles of this account, selected by "
            "their aws-cdk:bootstrap-role tag, and reads stack status and bucket lists to deploy itself",
            [f"Resource::arn:*:iam::{self.account}:role/*", "Resource::*"],
        )
        acknowledge(
            self.pipeline.node.find_child("Assets").node.find_child("FileRole"),
            "AwsSolutions-IAM5",
            "the asset publishing role (CDK Pipelines) is shared by the asset projects, whose names it cannot "
            "know, and starts and reads their builds; it assumes only the environments' file-publishing roles",
            [
                "Resource::*",
                f"Resource::arn:aws:logs:{self.region}:{self.account}:log-group:/aws/codebuild/*",
                f"Resource::arn:aws:codebuild:{self.region}:{self.account}:report-group/*",
            ],
        )

    def _projects(self) -> list[codebuild.Project]:
        return [c for c in self.node.find_all() if isinstance(c, codebuild.Project)]


def _as_sub(join: dict[str, Any]) -> str:
    """An empty-delimiter ``Fn::Join`` of strings and ``Ref``s as an ``Fn::Sub`` template."""
    delimiter, parts = join["Fn::Join"]
    if delimiter != "":
        raise ValueError(f"not an empty-delimiter Fn::Join: {join!r}")
    text = ""
    for part in parts:
        if isinstance(part, str):
            text += part
        elif isinstance(part, dict) and set(part) == {"Ref"}:
            text += "${" + part["Ref"] + "}"
        else:
            raise ValueError(f"cannot write {part!r} in an Fn::Sub template")
    return text


def _assume(role_arn: str) -> iam.PolicyStatement:
    return iam.PolicyStatement(sid="AssumeStageRole", actions=["sts:AssumeRole"], resources=[role_arn])
