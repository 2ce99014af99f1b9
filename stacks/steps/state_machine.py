"""The ML pipeline: one Lambda function per step spec, chained by a Step Functions state machine.

validate → [[prepare → wait/check] → train → wait/check → evaluate] → compile → wait/check → lock →
wait/check → register → wait/check → plan → Map over batches of devices (deploy → wait/check →
[rollback → wait/check]) → finish → release → notify. Runs train and compile in parallel; from the
lock on, one run at a time per environment (``lambda_handlers/deployment_lock.py``), and a run whose
data is older than what was deployed ends "Superseded". A failed or timed-out device is rolled back
in its batch before the failure is reported; every path out of the locked steps releases the lock.
Every wait loop is Wait + Choice on the section's ``status`` (``lambda_handlers/state.py``): no
``.sync`` integrations, which Neo and Panorama do not have.

Adding a step: a handler module in ``lambda_handlers/``, its spec in ``<module>_spec.py`` here, and
one line in :meth:`PipelineStateMachine._chain`; its function, role, log group, retries, catch and
dashboard widgets follow from the spec.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from aws_cdk import Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from lambda_handlers import settings
from lambda_handlers.deployment_lock import SUPERSEDED
from lambda_handlers.errors import RETRYABLE
from lambda_handlers.state import IN_PROGRESS, SUCCEEDED, LoopName
from panopipe.config.step_settings import step_settings_json
from stacks.lambda_code import python_function
from stacks.log_groups import encrypted_log_group
from stacks.nag import acknowledge, wildcard_findings
from stacks.steps.compilation_spec import CHECK_COMPILATION, START_COMPILATION
from stacks.steps.deployment_lock_spec import ACQUIRE_LOCK, CHECK_LOCK, RELEASE_LOCK
from stacks.steps.deployment_spec import CHECK_DEPLOYMENT, DEPLOY
from stacks.steps.fleet_spec import FINISH_DEPLOYMENT, PLAN_DEPLOYMENT
from stacks.steps.notify_spec import NOTIFY
from stacks.steps.package_registration_spec import CHECK_REGISTRATION, REGISTER_PACKAGE
from stacks.steps.preparation_spec import CHECK_PREPARATION, START_PREPARATION
from stacks.steps.rollback_spec import CHECK_ROLLBACK, ROLLBACK
from stacks.steps.step_spec import StepResources, StepSpec, apply_permissions
from stacks.steps.training_spec import CHECK_TRAINING, EVALUATE, START_TRAINING
from stacks.steps.trigger_spec import TRIGGER
from stacks.steps.validate_input_spec import VALIDATE_INPUT

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
#: A task may run its function's timeout plus this start-up slack; a stuck invocation fails it.
TASK_SLACK_SECONDS = 30
#: Batches deployed at once (an inline Map runs at most 40 iterations concurrently).
MAX_CONCURRENT_BATCHES = 40


@dataclass
class _Loop:
    """A step that starts work and the check step polled until its section leaves IN_PROGRESS."""

    start: tasks.LambdaInvoke
    check: tasks.LambdaInvoke
    choice: sfn.Choice


class PipelineStateMachine(Construct):
    """The step functions, their least-privilege roles, the state machine, and the trigger function."""

    def __init__(self, scope: Construct, construct_id: str, *, resources: StepResources) -> None:
        super().__init__(scope, construct_id)
        self.resources = resources
        self.config = resources.config
        self._settings_json = step_settings_json(self.config)
        #: The step functions by state name, in the order a run meets them.
        self.functions: dict[str, lambda_.Function] = {}
        #: Every caught state: its name, the state, and whether the run may hold the deployment lock there.
        self._failures: list[tuple[str, sfn.TaskStateBase | sfn.Map, bool]] = []
        self.state_machine = self._state_machine()
        acknowledge(
            self.state_machine.role,
            "AwsSolutions-IAM5",
            "LambdaInvoke grants every version of each step's own function (<arn>:*); the X-Ray and "
            "CloudWatch Logs delivery actions of tracing and logging have no resource-level permission",
            wildcard_findings(self, (), ("*", *(f"{f.function_arn}:*" for f in self.functions.values()))),
        )
        self.resources = replace(resources, state_machine=self.state_machine)
        self.trigger = self._function(TRIGGER)

    # --- functions ------------------------------------------------------------------------------

    def _values(self) -> dict[str, str]:
        r = self.resources
        values = {
            settings.DATA_BUCKET: r.data.bucket_name,
            settings.ARTIFACTS_BUCKET: r.artifacts.bucket_name,
            settings.ARTIFACTS_KEY_ARN: r.key.key_arn,
            settings.SAGEMAKER_ROLE_ARN: r.sagemaker_role.role_arn,
            settings.RUNTIME_ROLE_ARN: r.runtime_role.role_arn,
            settings.TRAINING_IMAGE: r.training_image,
            settings.TOPIC_ARN: r.topic.topic_arn,
            settings.MODEL_PACKAGE_NAME: r.model_package,
            settings.CODE_PACKAGE_NAME: r.code_package,
            settings.MANIFEST_TEMPLATE_KEY: r.manifest_template_key,
        }
        if r.training_source is not None:
            values[settings.TRAINING_SOURCE] = r.training_source.s3_object_url
        if r.processing_image is not None:
            values[settings.PROCESSING_IMAGE] = r.processing_image
        if r.preparation_script is not None:
            values[settings.PREPARATION_SCRIPT] = r.preparation_script.s3_object_url
        if r.state_machine is not None:
            values[settings.STATE_MACHINE_ARN] = r.state_machine.state_machine_arn
        return values

    def _function(self, spec: StepSpec) -> lambda_.Function:
        """The spec's function, with its own log group and a role holding exactly the spec's permissions."""
        values = self._values()
        environment = {name: values[name] for name in spec.variables if name in values}
        environment[settings.STEP_SETTINGS] = self._settings_json
        function = python_function(
            self,
            spec.id,
            handler=spec.handler,
            description=f"{self.config.prefix}: {spec.description}",
            role_description=f"{self.config.prefix} pipeline step {spec.id}",
            prefix=self.config.prefix,
            log_key=self.resources.key,
            environment=environment,
            timeout_seconds=spec.timeout_seconds,
            memory=spec.memory,
        )
        assert function.role is not None
        self._grant(function.role, spec)
        return function

    def _grant(self, role: iam.IRole, spec: StepSpec) -> None:
        """Add the spec's permissions to its role (see :func:`apply_permissions`)."""
        apply_permissions(role, spec.permissions(self.resources), spec.id)

    # --- state machine --------------------------------------------------------------------------

    def _invoke(self, spec: StepSpec, state_name: str | None = None) -> tasks.LambdaInvoke:
        """A task of ``spec``'s function that receives and returns the whole state, retried on transient errors."""
        if spec.id not in self.functions:
            self.functions[spec.id] = self._function(spec)
        task = tasks.LambdaInvoke(
            self,
            f"{state_name or spec.id}State",
            state_name=state_name or spec.id,
            lambda_function=self.functions[spec.id],
            payload_response_only=True,
            retry_on_service_exceptions=False,
            task_timeout=sfn.Timeout.duration(Duration.seconds(spec.timeout_seconds + TASK_SLACK_SECONDS)),
            comment=spec.description,
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

    def _step(self, spec: StepSpec, locked: bool = False) -> tasks.LambdaInvoke:
        """A step whose every error is recorded (``error``, ``failed_step``) and reported.

        ``locked``: the run may hold the deployment lock here, so the failure path releases it first.
        """
        task = self._invoke(spec)
        self._failures.append((spec.id, task, locked))
        return task

    def _polled(
        self,
        start: StepSpec,
        check: StepSpec,
        section: LoopName,
        *,
        locked: bool = False,
        caught: bool = True,
        knows_at_once: bool = False,
    ) -> _Loop:
        """``start`` → ``check`` → Choice (``$.<section>.status`` IN_PROGRESS → Wait → ``check``).

        ``caught``: errors go to the failure path (False inside the deployment Map, whose own Catch
        does). ``knows_at_once``: ``start`` already says whether to wait (no ``check`` straight after).
        """
        if caught:
            first, poll = self._step(start, locked), self._step(check, locked)
        else:
            first, poll = self._invoke(start), self._invoke(check)
        wait = sfn.Wait(
            self, f"Wait for {section}", time=sfn.WaitTime.duration(Duration.seconds(self.config.runs.poll_seconds))
        )
        choice = sfn.Choice(self, f"{section.capitalize()} still in progress?")
        choice.when(sfn.Condition.string_equals(f"$.{section}.status", IN_PROGRESS), wait.next(poll))
        first.next(choice if knows_at_once else poll)
        poll.next(choice)
        return _Loop(first, poll, choice)

    def _fleet(self) -> sfn.Map:
        """The deployment Map: per batch of devices, deploy → wait loop → roll back what failed → wait loop.

        Every batch runs at once; each waits for its ``start_at`` so creates keep to the API's pace
        (``lambda_handlers/fleet.py``). An iteration hands back only its devices' records (and the
        error that ended it, if one did); the Map's own Catch is for what no iteration can catch.
        """
        deployment = self._polled(DEPLOY, CHECK_DEPLOYMENT, "deployment", caught=False)
        rollback = self._polled(ROLLBACK, CHECK_ROLLBACK, "rollback", caught=False)
        turn = sfn.Wait(self, "Wait for the batch's turn", time=sfn.WaitTime.timestamp_path("$.batch.start_at"))
        deployed = sfn.Pass(self, "Batch deployed", parameters={"deployment.$": "$.deployment.devices"})
        rolled_back = sfn.Pass(
            self,
            "Batch rolled back",
            parameters={"deployment.$": "$.deployment.devices", "rollback.$": "$.rollback.devices"},
        )
        turn.next(deployment.start)
        deployment.choice.when(sfn.Condition.string_equals("$.deployment.status", SUCCEEDED), deployed)
        deployment.choice.otherwise(rollback.start)
        rollback.choice.otherwise(rolled_back)
        # A step that fails for good ends its batch only, with what it knows: the other batches go on,
        # and FinishDeployment reports the batch's devices FAILED with the error.
        not_deployed = sfn.Pass(
            self, "Batch not deployed", parameters={"undeployed.$": "$.batch.devices", "error.$": "$.error"}
        )
        broken = sfn.Pass(
            self, "Batch failed", parameters={"deployment.$": "$.deployment.devices", "error.$": "$.error"}
        )
        deployment.start.add_catch(not_deployed, errors=["States.ALL"], result_path="$.error")
        for task in (deployment.check, rollback.start, rollback.check):
            task.add_catch(broken, errors=["States.ALL"], result_path="$.error")
        fleet = sfn.Map(
            self,
            "Deploy batches",
            comment="One iteration per batch of runs.deploy_batch_size devices (PlanDeployment)",
            items_path="$.fleet.batches",
            item_selector={
                "run": sfn.JsonPath.object_at("$.run"),
                "lock": sfn.JsonPath.object_at("$.lock"),
                "model": sfn.JsonPath.object_at("$.model"),
                "package": sfn.JsonPath.object_at("$.package"),
                "code_package": sfn.JsonPath.object_at("$.code_package"),
                "batch": sfn.JsonPath.object_at("$$.Map.Item.Value"),
            },
            max_concurrency=MAX_CONCURRENT_BATCHES,
            result_path="$.fleet.results",
        )
        fleet.item_processor(turn)
        self._failures.append(("DeployBatches", fleet, True))
        return fleet

    def _chain(self) -> sfn.IChainable:
        """The run, step by step, in the order a run meets them."""
        start = sfn.Pass(
            self,
            "Start",
            parameters={
                "input.$": "$",
                "run": {"name.$": "$$.Execution.Name", "started.$": "$$.Execution.StartTime"},
            },
        )
        validate = self._step(VALIDATE_INPUT)
        training = self._polled(START_TRAINING, CHECK_TRAINING, "training")
        evaluate = self._step(EVALUATE)
        compilation = self._polled(START_COMPILATION, CHECK_COMPILATION, "compilation")
        lock = self._polled(ACQUIRE_LOCK, CHECK_LOCK, "lock", locked=True, knows_at_once=True)
        registration = self._polled(REGISTER_PACKAGE, CHECK_REGISTRATION, "package", locked=True)
        plan = self._step(PLAN_DEPLOYMENT, locked=True)
        fleet = self._fleet()
        finish = self._step(FINISH_DEPLOYMENT, locked=True)
        notify_success, notify_failure, notify_superseded = self._notify(NOTIFY)
        release, release_failed = self._release(notify_success, notify_failure)

        route = sfn.Choice(self, "Train first?", comment="A data set is trained on; a model goes straight to Neo")
        route.when(sfn.Condition.string_equals("$.source.kind", "dataset"), self._prepared(training.start))
        route.otherwise(compilation.start)
        training.choice.otherwise(evaluate)
        evaluate.next(compilation.start)
        compilation.choice.otherwise(lock.start)
        lock.choice.when(sfn.Condition.string_equals("$.lock.status", SUPERSEDED), notify_superseded)
        lock.choice.otherwise(registration.start)
        registration.choice.otherwise(plan)
        plan.next(fleet)
        fleet.next(finish)
        deployed = sfn.Choice(self, "Deployed everywhere?")
        finish.next(deployed)
        deployed.when(sfn.Condition.string_equals("$.deployment.status", SUCCEEDED), release)
        deployed.otherwise(release_failed)
        for name, task, locked in self._failures:
            recorder = sfn.Pass(
                self, f"{name} failed", result=sfn.Result.from_string(name), result_path="$.failed_step"
            )
            task.add_catch(
                recorder.next(release_failed if locked else notify_failure),
                errors=["States.ALL"],
                result_path="$.error",
            )
        return start.next(validate).next(route)

    def _release(
        self, notify_success: sfn.IChainable, notify_failure: sfn.IChainable
    ) -> tuple[tasks.LambdaInvoke, tasks.LambdaInvoke]:
        """ReleaseLock before each report of a run that may hold it; a failed release is logged, the report goes on.

        (The lease then frees the lock ``runs.lock_lease_seconds`` later.)
        """
        release, release_failed = self._invoke(RELEASE_LOCK), self._invoke(RELEASE_LOCK, "Release lock of a failed run")
        for task, report in ((release, notify_success), (release_failed, notify_failure)):
            task.next(report)
            task.add_catch(report, errors=["States.ALL"], result_path="$.lock_error")
        return release, release_failed

    def _prepared(self, training: sfn.IChainable) -> sfn.IChainable:
        """Raw images (ValidateInput set ``$.source.prepare``) go through the preparation loop to ``training``.

        Without the step (``preparation.enabled: false``) ValidateInput refuses raw images: straight on.
        """
        if not self.config.preparation.enabled:
            return training
        preparation = self._polled(START_PREPARATION, CHECK_PREPARATION, "preparation")
        preparation.choice.otherwise(training)
        prepare = sfn.Choice(self, "Prepare first?", comment="Raw images become train/validation channels first")
        prepare.when(
            sfn.Condition.and_(
                sfn.Condition.is_present("$.source.prepare"), sfn.Condition.boolean_equals("$.source.prepare", True)
            ),
            preparation.start,
        )
        return prepare.otherwise(training)

    def _notify(self, spec: StepSpec) -> tuple[tasks.LambdaInvoke, tasks.LambdaInvoke, tasks.LambdaInvoke]:
        """The success, failure and superseded reports; a failed report still ends the run with a named error."""
        success, failure = self._invoke(spec, "Notify success"), self._invoke(spec, "Notify failure")
        superseded = self._invoke(spec, "Notify superseded")
        success.next(sfn.Succeed(self, "Deployed"))
        superseded.next(sfn.Succeed(self, "Superseded", comment="Newer data was deployed already: nothing to do"))
        failure.next(sfn.Fail(self, "Run failed", error_path="$.summary.error", cause_path="$.summary.reason"))
        for task, fail_id, cause in (
            (
                success,
                "Deployed, notification failed",
                "the application was deployed, but the success notification could not be published",
            ),
            (
                superseded,
                "Superseded, notification failed",
                "the run was superseded by newer data and deployed nothing; its notification could not be published",
            ),
            (
                failure,
                "Notification failed",
                "the run failed and its failure notification could not be published; the execution "
                "history holds both errors",
            ),
        ):
            # The catch keeps the state (the run's own error stays in $.error for the execution history).
            fail = sfn.Fail(self, fail_id, error="NotificationFailed", cause=cause)
            task.add_catch(fail, errors=["States.ALL"], result_path="$.notify_error")
        return success, failure, superseded

    def _state_machine(self) -> sfn.StateMachine:
        definition = self._chain()
        log_group = encrypted_log_group(
            self, "StateMachineLogs", prefix=self.config.prefix, name="state-machine", key=self.resources.key
        )
        return sfn.StateMachine(
            self,
            "StateMachine",
            state_machine_name=self.resources.state_machine_name,
            state_machine_type=sfn.StateMachineType.STANDARD,
            definition_body=sfn.DefinitionBody.from_chainable(definition),
            timeout=Duration.seconds(self.config.run_timeout_seconds),
            tracing_enabled=True,
            logs=sfn.LogOptions(destination=log_group, level=sfn.LogLevel.ALL, include_execution_data=True),
            comment=f"{self.config.prefix}: train, evaluate, compile, register, deploy, roll back, notify",
        )
