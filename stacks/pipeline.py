"""The ML pipeline: one Lambda function per step, chained by a Step Functions state machine.

validate → [train → wait/check → evaluate] → compile → wait/check → register → wait/check →
deploy → wait/check → notify; a failed or timed-out deployment rolls back before the failure is
reported. Every wait loop is Wait + Choice on the section's ``status`` (``lambda_handlers/state.py``)
so the same definition runs in AWS and in the local emulator (no ``.sync`` integrations).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from aws_cdk import ArnFormat, Duration, Fn, RemovalPolicy, Stack, Stage
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3_assets as s3_assets
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from lambda_handlers import settings as env
from lambda_handlers.errors import RETRYABLE
from lambda_handlers.state import IN_PROGRESS, SUCCEEDED
from panopipe.config import PipelineConfig
from panopipe.handler_settings import handler_settings
from panopipe.naming import resource_prefix
from stacks.handler_code import ROOT, RUNTIME, handler_code, handler_path
from stacks.nag import acknowledge, wildcard_findings
from stacks.source_archive import write_archive
from stacks.storage import PipelineStorage
from stacks.training_image import image_uri, registry_account, training_image

#: Powertools for AWS Lambda (Python) v3, the AWS-published layer for Python 3.14 on x86_64.
POWERTOOLS_LAYER = (
    "arn:${AWS::Partition}:lambda:${AWS::Region}:017000801446:layer:AWSLambdaPowertoolsPythonV3-python314-x86_64:27"
)
#: Errors every task retries, with backoff: ours (errors.RETRYABLE) and the Lambda service's own.
RETRY_ERRORS = (
    *RETRYABLE,
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
)
RETRY_INTERVAL = Duration.seconds(2)
RETRY_ATTEMPTS = 6
RETRY_BACKOFF = 2.0
RETRY_MAX_DELAY = Duration.seconds(60)
TASK_SLACK_SECONDS = 30


@dataclass(frozen=True)
class PipelineInputs:
    """What the pipeline uses from the other stacks (constructs, not names)."""

    storage: PipelineStorage
    sagemaker_role: iam.IRole
    runtime_role: iam.IRole
    topic: sns.ITopic
    model_package: str
    code_package: str
    manifest_template_key: str


@dataclass(frozen=True)
class Step:
    """One Lambda-backed step: its handler, the variables it reads and its limits."""

    id: str
    module: str
    function: str
    variables: tuple[str, ...]
    timeout_seconds: int = 60
    memory: int = 256
    description: str = ""


STEPS: tuple[Step, ...] = (
    Step(
        "ValidateInput",
        "validate_input",
        "handler",
        (env.DATA_BUCKET, env.ARTIFACTS_BUCKET),
        description="Checks the run's input",
    ),
    Step(
        "StartTraining",
        "training",
        "start_handler",
        (env.ARTIFACTS_BUCKET, env.ARTIFACTS_KEY_ARN, env.SAGEMAKER_ROLE_ARN, env.TRAINING_IMAGE, env.TRAINING_SOURCE),
        description="Starts (or adopts) the SageMaker training job",
    ),
    Step("CheckTraining", "training", "check_handler", (), description="Polls the training job"),
    Step("Evaluate", "training", "evaluate_handler", (), description="Applies the metric gate"),
    Step(
        "StartCompilation",
        "compilation",
        "start_handler",
        (env.ARTIFACTS_BUCKET, env.ARTIFACTS_KEY_ARN, env.SAGEMAKER_ROLE_ARN),
        description="Starts (or adopts) the SageMaker Neo compilation job",
    ),
    Step("CheckCompilation", "compilation", "check_handler", (), description="Polls the compilation job"),
    Step(
        "RegisterPackage",
        "package_registration",
        "register_handler",
        (env.ARTIFACTS_BUCKET, env.MANIFEST_TEMPLATE_KEY, env.MODEL_PACKAGE_NAME, env.CODE_PACKAGE_NAME),
        timeout_seconds=900,  # hashes and copies the raw model (can be GBs)
        memory=1024,
        description="Uploads the raw model and registers a Panorama package version",
    ),
    Step(
        "CheckRegistration",
        "package_registration",
        "check_handler",
        (env.ARTIFACTS_BUCKET,),
        description="Polls the package version; deregisters versions beyond the kept window",
    ),
    Step(
        "Deploy",
        "deployment",
        "deploy_handler",
        (
            env.ARTIFACTS_BUCKET,
            env.MANIFEST_TEMPLATE_KEY,
            env.RUNTIME_ROLE_ARN,
            env.MODEL_PACKAGE_NAME,
            env.CODE_PACKAGE_NAME,
        ),
        timeout_seconds=120,  # one create per second per device (API quota)
        description="Creates the application instance on every device, replacing the running one",
    ),
    Step("CheckDeployment", "deployment", "check_handler", (env.ARTIFACTS_BUCKET,), description="Polls deployments"),
    Step(
        "Rollback",
        "deployment",
        "rollback_handler",
        (env.ARTIFACTS_BUCKET, env.RUNTIME_ROLE_ARN),
        timeout_seconds=120,
        description="Redeploys the last good manifest on the devices that failed",
    ),
    Step("CheckRollback", "deployment", "check_rollback_handler", (env.ARTIFACTS_BUCKET,), description="Polls"),
    Step("Notify", "notify", "handler", (env.TOPIC_ARN,), description="Reports the run's outcome to SNS"),
)
STEP_BY_ID = {s.id: s for s in STEPS}
TRIGGER = Step(
    "Trigger",
    "trigger",
    "handler",
    (env.STATE_MACHINE_ARN, env.DATA_BUCKET),
    description="Starts one run per data set version (_READY marker or schedule)",
)


class Pipeline(Construct):
    """The step functions, their least-privilege roles and the state machine that chains them."""

    def __init__(self, scope: Construct, construct_id: str, *, config: PipelineConfig, inputs: PipelineInputs) -> None:
        super().__init__(scope, construct_id)
        self.config = config
        self.inputs = inputs
        self.buckets = inputs.storage.refs_in(self)
        self.key = inputs.storage.key
        image = training_image(config.training, config.model)
        self.training_image = image_uri(
            image, registry_account(self, image, config.region), config.region or Stack.of(self).region
        )
        self.prefix = resource_prefix(config.project, config.environment)
        self.state_machine_name = f"{self.prefix}-pipeline"
        self._layer = lambda_.LayerVersion.from_layer_version_arn(self, "Powertools", Fn.sub(POWERTOOLS_LAYER))
        self._settings_json = handler_settings(config).to_json()
        self.training_source = self._training_source()
        self.functions: dict[str, lambda_.Function] = {}
        for step in STEPS:
            self.functions[step.id] = self._function(step)
        self._grant_steps()
        self.state_machine = self._state_machine()
        acknowledge(
            self.state_machine.role,
            "AwsSolutions-IAM5",
            "LambdaInvoke grants every version of each step's own function (<arn>:*); the X-Ray and "
            "CloudWatch Logs delivery actions of tracing and logging have no resource-level permission",
            wildcard_findings(self, (), ("*", *(f"{f.function_arn}:*" for f in self.functions.values()))),
        )
        self.functions[TRIGGER.id] = self._function(TRIGGER)
        self._grant_trigger()

    # --- functions ------------------------------------------------------------------------------

    def _values(self) -> dict[str, str]:
        inputs = self.inputs
        values = {
            env.DATA_BUCKET: self.buckets.data.bucket_name,
            env.ARTIFACTS_BUCKET: self.buckets.artifacts.bucket_name,
            env.ARTIFACTS_KEY_ARN: self.key.key_arn,
            env.SAGEMAKER_ROLE_ARN: inputs.sagemaker_role.role_arn,
            env.RUNTIME_ROLE_ARN: inputs.runtime_role.role_arn,
            env.TRAINING_IMAGE: self.training_image,
            env.TOPIC_ARN: inputs.topic.topic_arn,
            env.MODEL_PACKAGE_NAME: inputs.model_package,
            env.CODE_PACKAGE_NAME: inputs.code_package,
            env.MANIFEST_TEMPLATE_KEY: inputs.manifest_template_key,
        }
        if self.training_source is not None:
            values[env.TRAINING_SOURCE] = self.training_source.s3_object_url
        if hasattr(self, "state_machine"):
            values[env.STATE_MACHINE_ARN] = self.state_machine.state_machine_arn
        return values

    def _training_source(self) -> s3_assets.Asset | None:
        """Script mode: the training code as a deterministic tar.gz file asset (built at synth)."""
        directory = self.config.training.source_directory
        if directory is None:
            return None
        archive = write_archive(ROOT / directory, Path(Stage.of(self).outdir) / "training-sources")  # type: ignore[union-attr]
        return s3_assets.Asset(self, "TrainingSource", path=str(archive))

    def _function(self, step: Step) -> lambda_.Function:
        log_group = logs.LogGroup(
            self, f"{step.id}Logs", retention=logs.RetentionDays.ONE_YEAR, removal_policy=RemovalPolicy.DESTROY
        )
        role = iam.Role(
            self,
            f"{step.id}Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"{self.prefix} pipeline step {step.id}",
        )
        log_group.grant_write(role)
        values = self._values()
        environment = {name: values[name] for name in step.variables if name in values}
        environment[env.STEP_SETTINGS] = self._settings_json
        environment["POWERTOOLS_SERVICE_NAME"] = self.prefix
        return lambda_.Function(
            self,
            step.id,
            runtime=RUNTIME,
            handler=handler_path(step.module, step.function),
            code=handler_code(),
            role=role,
            log_group=log_group,
            layers=[self._layer],
            timeout=Duration.seconds(step.timeout_seconds),
            memory_size=step.memory,
            environment=environment,
            description=f"{self.prefix}: {step.description}",
        )

    def _role(self, step_id: str) -> iam.IRole:
        role = self.functions[step_id].role
        assert role is not None
        return role

    def _allow(
        self, step_ids: Sequence[str], sid: str, actions: Sequence[str], resources: Sequence[str], why: str = ""
    ) -> None:
        """Add one statement to each step's role; ``why`` acknowledges exactly its wildcards."""
        findings = wildcard_findings(self, actions, resources)
        if findings and not why:
            raise ValueError(f"statement {sid} has wildcards {findings}: say why")
        for step_id in step_ids:
            role = self._role(step_id)
            role.add_to_principal_policy(iam.PolicyStatement(sid=sid, actions=list(actions), resources=list(resources)))
            if findings:
                acknowledge(role, "AwsSolutions-IAM5", f"{sid}: {why}", findings)

    def _arn(self, service: str, resource: str, region: bool = True) -> str:
        return Stack.of(self).format_arn(
            service=service,
            resource=resource,
            arn_format=ArnFormat.SLASH_RESOURCE_NAME,
            resource_name="*",
            region=None if region else "",
        )

    def _acknowledge_grant(
        self, step_ids: Sequence[str], actions: Sequence[str], resources: Sequence[str], why: str
    ) -> None:
        """Acknowledge the wildcards that a ``grant_*`` call wrote into these steps' roles."""
        for step_id in step_ids:
            acknowledge(self._role(step_id), "AwsSolutions-IAM5", why, wildcard_findings(self, actions, resources))

    def _grant_steps(self) -> None:
        inputs, prefix, stack = self.inputs, self.prefix, Stack.of(self)
        data, artifacts = self.buckets.data, self.buckets.artifacts
        data.grant_read(self._role("ValidateInput"))
        self._acknowledge_grant(
            ("ValidateInput",),
            _GRANT_READ_ACTIONS,
            (data.arn_for_objects("*"),),
            "grant_read on the data bucket: a data set is any prefix in it (channels are listed and read)",
        )
        models = (data.arn_for_objects("*"), artifacts.arn_for_objects("*"))
        self._allow(
            ("ValidateInput", "RegisterPackage"),
            "ReadModels",
            ("s3:GetObject",),
            models,
            "a model (given, or a training job's output) may be any object of the pipeline's data or "
            "artifacts bucket; read only",
        )
        self._allow(
            ("ValidateInput", "RegisterPackage", "CheckRegistration", "Rollback"),
            "ListArtifacts",
            ("s3:ListBucket",),
            (artifacts.bucket_arn,),
        )
        self._allow(
            ("ValidateInput",),
            "DescribeNamedTrainingJob",
            ("sagemaker:DescribeTrainingJob",),
            (self._arn("sagemaker", "training-job"),),
            "the run input may name any existing training job in this account and region; describe only",
        )
        training_jobs = f"{self._arn('sagemaker', 'training-job')[:-1]}{prefix}-train-*"
        compilation_jobs = f"{self._arn('sagemaker', 'compilation-job')[:-1]}{prefix}-neo-*"
        own_jobs = "job names are derived from each run's name, always under this environment's own prefix"
        self._allow(
            ("StartTraining",),
            "StartTrainingJob",
            ("sagemaker:CreateTrainingJob", "sagemaker:DescribeTrainingJob"),
            (training_jobs,),
            own_jobs,
        )
        self._allow(
            ("CheckTraining",),
            "PollTrainingJob",
            ("sagemaker:DescribeTrainingJob", "sagemaker:StopTrainingJob"),
            (training_jobs,),
            own_jobs,
        )
        self._allow(("Evaluate",), "ReadMetrics", ("sagemaker:DescribeTrainingJob",), (training_jobs,), own_jobs)
        self._allow(
            ("StartCompilation",),
            "StartCompilationJob",
            ("sagemaker:CreateCompilationJob", "sagemaker:DescribeCompilationJob"),
            (compilation_jobs,),
            own_jobs,
        )
        self._allow(
            ("CheckCompilation",),
            "PollCompilationJob",
            ("sagemaker:DescribeCompilationJob", "sagemaker:StopCompilationJob"),
            (compilation_jobs,),
            own_jobs,
        )
        if self.training_source is not None:
            self.training_source.grant_read(self._role("StartTraining"))
            self._acknowledge_grant(
                ("StartTraining",),
                _GRANT_READ_ACTIONS,
                (self.training_source.bucket.arn_for_objects("*"),),
                "grant_read on the CDK asset that holds the script-mode source archive (copied to artifacts)",
            )
            self._allow(
                ("StartTraining",),
                "StageSourceArchive",
                ("s3:GetObject", "s3:PutObject"),
                (artifacts.arn_for_objects("code/*"),),
                "one copy of each source archive, named by its asset hash, under code/ in the artifacts bucket",
            )
            self._allow(("StartTraining",), "ListArtifactsForSource", ("s3:ListBucket",), (artifacts.bucket_arn,))
            self.key.grant_encrypt_decrypt(self._role("StartTraining"))
            self._acknowledge_grant(
                ("StartTraining",),
                _KMS_WRITE_ACTIONS,
                (),
                "grant_encrypt_decrypt on the artifacts bucket key only, to write the source archive copy",
            )
        for step_id in ("StartTraining", "StartCompilation"):
            _pass_role(self._role(step_id), inputs.sagemaker_role, "sagemaker.amazonaws.com")
        for step_id in ("Deploy", "Rollback"):
            _pass_role(self._role(step_id), inputs.runtime_role, "panorama.amazonaws.com")

        template = artifacts.arn_for_objects(inputs.manifest_template_key)
        self._allow(("Deploy",), "ReadManifestTemplate", ("s3:GetObject",), (template,))
        for step_id in ("RegisterPackage",):
            self.key.grant_decrypt(self._role(step_id))
        packages = self._arn("panorama", "package")
        any_package = "packages are created by name at run time (their ids are not known at synth)"
        self._allow(
            ("RegisterPackage",),
            "RegisterPackageVersion",
            ("panorama:DescribePackage", "panorama:RegisterPackageVersion", "panorama:DescribePackageVersion"),
            (packages,),
            any_package,
        )
        self._allow(
            ("RegisterPackage",),
            "CreatePackage",
            ("panorama:CreatePackage",),
            ("*",),
            "panorama:CreatePackage has no resource-level permission (Service Authorization Reference)",
        )
        self._allow(
            ("RegisterPackage",),
            "WritePackageStorage",
            ("s3:PutObject", "s3:PutObjectAcl", "s3:GetObject"),
            (
                f"arn:{stack.partition}:s3:{stack.region}:*:accesspoint/*",
                f"arn:{stack.partition}:s3:{stack.region}:*:accesspoint/*/object/*",
            ),
            "a package's storage location is an S3 access point that Panorama owns and names in "
            "DescribePackage/CreatePackage at run time",
        )
        self._allow(
            ("CheckRegistration",),
            "PollAndTrimPackageVersions",
            ("panorama:DescribePackageVersion", "panorama:DeregisterPackageVersion"),
            (packages,),
            any_package,
        )
        self._allow(
            ("CheckRegistration",),
            "ReadLastGoodPins",
            ("s3:GetObject",),
            (artifacts.arn_for_objects("deployments/*"),),
            "patch versions that a device's last-good manifest pins are never deregistered (one object per device)",
        )
        self._allow(
            ("CheckRegistration",),
            "PackageHistory",
            ("s3:GetObject", "s3:PutObject"),
            (artifacts.arn_for_objects("panorama/package-history/*"),),
            "one history object per package under this prefix of the artifacts bucket",
        )
        self._allow(
            ("Deploy", "Rollback"),
            "CreateApplicationInstance",
            ("panorama:CreateApplicationInstance", "panorama:ListApplicationInstances", "panorama:ListDevices"),
            ("*",),
            "CreateApplicationInstance, ListApplicationInstances and ListDevices have no resource-level "
            "permission (Service Authorization Reference)",
        )
        instances = self._arn("panorama", "applicationInstance")
        any_instance = "application instance ids are assigned by Panorama at run time, so no narrower ARN exists"
        self._allow(
            ("Deploy", "Rollback"), "TagApplicationInstance", ("panorama:TagResource",), (instances,), any_instance
        )
        self._allow(
            ("Deploy", "CheckDeployment", "CheckRollback"),  # a retried Deploy describes what it created
            "DescribeApplicationInstance",
            ("panorama:DescribeApplicationInstance",),
            (instances,),
            any_instance,
        )
        runs, last_good = artifacts.arn_for_objects("runs/*"), artifacts.arn_for_objects("deployments/*")
        per_run = "one manifest object per run and device, under this prefix of the pipeline's artifacts bucket"
        self._allow(("Deploy", "Rollback"), "WriteRunManifests", ("s3:PutObject",), (runs,), per_run)
        self._allow(("CheckDeployment",), "ReadRunManifests", ("s3:GetObject",), (runs,), per_run)
        per_device = "one last-good manifest per device, under this prefix of the pipeline's artifacts bucket"
        self._allow(("CheckDeployment",), "WriteLastGood", ("s3:PutObject",), (last_good,), per_device)
        self._allow(("Rollback",), "ReadLastGood", ("s3:GetObject",), (last_good,), per_device)
        writers = ("CheckRegistration", "Deploy", "CheckDeployment", "Rollback")
        for step_id in writers:
            self.key.grant_encrypt_decrypt(self._role(step_id))
        self._acknowledge_grant(
            writers,
            _KMS_WRITE_ACTIONS,
            (),
            "grant_encrypt_decrypt on the artifacts bucket key only, to write SSE-KMS objects in that bucket",
        )
        inputs.topic.grant_publish(self._role("Notify"))
        self._acknowledge_grant(
            ("Notify",),
            ("kms:GenerateDataKey*",),
            (),
            "grant_publish on the KMS-encrypted notification topic writes kms:GenerateDataKey* for its key only",
        )

    def _grant_trigger(self) -> None:
        role = self._role(TRIGGER.id)
        self.state_machine.grant_start_execution(role)
        executions = Stack.of(self).format_arn(
            service="states",
            resource="execution",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
            resource_name=f"{self.state_machine_name}:*",
        )
        self._allow(
            (TRIGGER.id,),
            "DescribeRunsOfThisMachine",
            ("states:DescribeExecution",),
            (executions,),
            "the trigger describes executions of this one state machine by name, to report a data set "
            "version that already ran; execution ARNs end in the run name",
        )
        data = self.buckets.data
        markers = f"{self.config.pipeline.dataset_prefix}*"
        data.grant_read(role, markers)
        self._acknowledge_grant(
            (TRIGGER.id,),
            _GRANT_READ_ACTIONS,
            (data.arn_for_objects(markers),),
            "grant_read on the data sets prefix: the scheduled run looks for the newest _READY marker",
        )
        self._allow((TRIGGER.id,), "ListDataSetVersions", ("s3:ListBucketVersions",), (data.bucket_arn,))

    # --- state machine --------------------------------------------------------------------------

    def _task(self, step_id: str, state_name: str | None = None) -> tasks.LambdaInvoke:
        """A Lambda step that receives and returns the whole state, retried on transient errors."""
        task = tasks.LambdaInvoke(
            self,
            f"{state_name or step_id}State",
            state_name=state_name or step_id,
            lambda_function=self.functions[step_id],
            payload_response_only=True,
            retry_on_service_exceptions=False,
            # The function's own timeout plus start-up slack: a stuck invocation fails the task.
            task_timeout=sfn.Timeout.duration(
                Duration.seconds(STEP_BY_ID[step_id].timeout_seconds + TASK_SLACK_SECONDS)
            ),
            comment=STEP_BY_ID[step_id].description,
        )
        task.add_retry(
            errors=list(RETRY_ERRORS),
            interval=RETRY_INTERVAL,
            max_attempts=RETRY_ATTEMPTS,
            backoff_rate=RETRY_BACKOFF,
            max_delay=RETRY_MAX_DELAY,
            jitter_strategy=sfn.JitterType.FULL,
        )
        return task

    def _loop(
        self, check: tasks.LambdaInvoke, section: str, then: Callable[[sfn.Choice], sfn.Choice]
    ) -> tasks.LambdaInvoke:
        """Loop ``check`` → Choice (``$.<section>.status`` IN_PROGRESS → Wait → ``check``), else ``then``."""
        wait = sfn.Wait(
            self,
            f"Wait for {section}",
            time=sfn.WaitTime.duration(Duration.seconds(self.config.pipeline.poll_seconds)),
        )
        choice = sfn.Choice(self, f"{section.capitalize()} still in progress?")
        choice.when(sfn.Condition.string_equals(f"$.{section}.status", IN_PROGRESS), wait.next(check))
        then(choice)
        check.next(choice)
        return check

    def _state_machine(self) -> sfn.StateMachine:
        failed = sfn.Fail(self, "Run failed", error_path="$.summary.error", cause_path="$.summary.reason")
        notify_failure = self._task("Notify", "Notify failure")
        notify_failure.next(failed)
        # The catch keeps the state (the run's own error stays in $.error for the execution history).
        notify_failure.add_catch(
            sfn.Fail(
                self,
                "Notification failed",
                error="NotificationFailed",
                cause="the run failed and its failure notification could not be published; the execution "
                "history holds both errors",
            ),
            errors=["States.ALL"],
            result_path="$.notify_error",
        )
        notify_success = self._task("Notify", "Notify success")
        notify_success.next(sfn.Succeed(self, "Deployed"))
        notify_success.add_catch(
            sfn.Fail(
                self,
                "Deployed, notification failed",
                error="NotificationFailed",
                cause="the application was deployed, but the success notification could not be published",
            ),
            errors=["States.ALL"],
            result_path="$.notify_error",
        )

        steps: dict[str, tasks.LambdaInvoke] = {}

        def task(step_id: str) -> tasks.LambdaInvoke:
            """A step whose every error is recorded (``error``, ``failed_step``) and reported."""
            steps[step_id] = self._task(step_id)
            record = sfn.Pass(
                self,
                f"{step_id} failed",
                result=sfn.Result.from_string(step_id),
                result_path="$.failed_step",
            )
            steps[step_id].add_catch(record.next(notify_failure), errors=["States.ALL"], result_path="$.error")
            return steps[step_id]

        start = sfn.Pass(
            self,
            "Start",
            parameters={
                "input.$": "$",
                "run": {"name.$": "$$.Execution.Name", "started.$": "$$.Execution.StartTime"},
            },
        )
        validate, start_training, evaluate = task("ValidateInput"), task("StartTraining"), task("Evaluate")
        start_compilation, register, deploy = task("StartCompilation"), task("RegisterPackage"), task("Deploy")
        rollback = task("Rollback")

        check_rollback = self._loop(task("CheckRollback"), "rollback", lambda c: c.otherwise(notify_failure))
        rollback.next(check_rollback)
        check_deployment = self._loop(
            task("CheckDeployment"),
            "deployment",
            lambda c: c.when(sfn.Condition.string_equals("$.deployment.status", SUCCEEDED), notify_success).otherwise(
                rollback
            ),
        )
        deploy.next(check_deployment)
        check_registration = self._loop(task("CheckRegistration"), "package", lambda c: c.otherwise(deploy))
        register.next(check_registration)
        check_compilation = self._loop(task("CheckCompilation"), "compilation", lambda c: c.otherwise(register))
        start_compilation.next(check_compilation)
        evaluate.next(start_compilation)
        check_training = self._loop(task("CheckTraining"), "training", lambda c: c.otherwise(evaluate))
        start_training.next(check_training)
        route = sfn.Choice(self, "Train first?", comment="A data set is trained on; a model goes straight to Neo")
        route.when(sfn.Condition.string_equals("$.source.kind", "dataset"), start_training).otherwise(start_compilation)
        definition = start.next(validate).next(route)

        log_group = logs.LogGroup(
            self, "StateMachineLogs", retention=logs.RetentionDays.ONE_YEAR, removal_policy=RemovalPolicy.DESTROY
        )
        return sfn.StateMachine(
            self,
            "StateMachine",
            state_machine_name=self.state_machine_name,
            state_machine_type=sfn.StateMachineType.STANDARD,
            definition_body=sfn.DefinitionBody.from_chainable(definition),
            timeout=Duration.seconds(self.config.run_timeout_seconds),
            tracing_enabled=True,
            logs=sfn.LogOptions(destination=log_group, level=sfn.LogLevel.ALL, include_execution_data=True),
            comment=f"{self.prefix}: train, evaluate, compile, register, deploy, roll back, notify",
        )


#: Wildcard actions that ``grant_read`` / ``grant_encrypt_decrypt`` write.
_GRANT_READ_ACTIONS = ("s3:GetBucket*", "s3:GetObject*", "s3:List*")
_KMS_WRITE_ACTIONS = ("kms:ReEncrypt*", "kms:GenerateDataKey*")


def _pass_role(role: iam.IRole, passed: iam.IRole, service: str) -> None:
    """``iam:PassRole`` for exactly one role, to exactly one service."""
    role.add_to_principal_policy(
        iam.PolicyStatement(
            sid="PassRoleToService",
            actions=["iam:PassRole"],
            resources=[passed.role_arn],
            conditions={"StringEquals": {"iam:PassedToService": service}},
        )
    )
