"""Whole pipeline runs: the synthesized state machine walked in-process, every Task a real handler.

The definition is the dev stage's (session fixture ``synthesized``), read as ``test_pipeline_stack``
reads it; each Task state calls the handler its function's ``Handler`` names, with that function's
environment: literals from the template, ``Fn::Sub`` resolved for moto's account, our own values for
cross-stack tokens (:data:`TOKENS`). S3, SageMaker and SNS (read through a subscribed SQS queue) are
moto; Panorama is a botocore Stubber on the carried model, whose queue of answers is the exact,
ordered conversation a run must have. SageMaker jobs move on through ``before_task`` hooks that set
moto's job objects before each poll. Waits do not sleep: they advance the clock of
``lambda_handlers.state`` (:meth:`Interpreter.now`), so loop deadlines expire at their configured value.
"""

from __future__ import annotations

import copy
import json
import types
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.stub import ANY, Stubber

from lambda_handlers import app_instances, names, rollback, training
from lambda_handlers import settings as cfg
from lambda_handlers import state as handler_state
from lambda_handlers.app_instances import APP_TAG, ROLLBACK_TAG, RUN_TAG
from lambda_handlers.artifacts import history_key, last_good_key, read_json, split_s3_uri, write_json
from lambda_handlers.aws import clients, panorama
from lambda_handlers.errors import TransientError
from lambda_handlers.settings import StepSettings, install, parse
from panorama_app.manifest import documents, validation
from panorama_app.manifest.spec import ApplicationSpec
from tests.conftest import Synthesized
from tests.handlers.conftest import ACCOUNT, REGION, recordio, sagemaker_backend
from tests.handlers.interpreter import Execution, Function, Interpreter
from tests.test_pipeline_stack import definition

if TYPE_CHECKING:
    from mypy_boto3_sagemaker.type_defs import DescribeCompilationJobResponseTypeDef

State = dict[str, Any]
Hook = Callable[[State], None]

DATA = f"aws-panorama-panopipe-dev-data-{ACCOUNT}-{REGION}"  # what the template's Fn::Sub gives
ARTIFACTS = f"aws-panorama-panopipe-dev-artifacts-{ACCOUNT}-{REGION}"
STORE = "panorama-package-storage"  # the storage access point Panorama names; a bucket in moto
TOPIC = f"arn:aws:sns:{REGION}:{ACCOUNT}:panopipe-dev-notifications"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/panopipe-dev-panorama-runtime"
#: Values CloudFormation resolves across stacks (GetStackOutput, mappings): ours.
TOKENS = {
    cfg.ARTIFACTS_KEY_ARN: f"arn:aws:kms:{REGION}:{ACCOUNT}:key/11111111-2222-3333-4444-555555555555",
    cfg.SAGEMAKER_ROLE_ARN: f"arn:aws:iam::{ACCOUNT}:role/panopipe-dev-sagemaker-execution",
    cfg.RUNTIME_ROLE_ARN: ROLE,
    cfg.TRAINING_IMAGE: f"811284229777.dkr.ecr.{REGION}.amazonaws.com/image-classification:1",
    cfg.PROCESSING_IMAGE: f"763104351884.dkr.ecr.{REGION}.amazonaws.com/pytorch-training:2.3.0-cpu-py311",
    cfg.TOPIC_ARN: TOPIC,
    cfg.STATE_MACHINE_ARN: f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:panopipe-dev-pipeline",
}
DEVICE, DEVICE_ID = "local-device-1", "device-4f1b2c3d"  # config/dev.yaml names its device
DATASET = f"s3://{DATA}/datasets/people/"
RUN = names.execution_name(DATA, "datasets/people/", "v1")  # the name the trigger gives a run
MODEL_KEY = "models/people-v7.tar.gz"
MODEL_URI = f"s3://{ARTIFACTS}/{MODEL_KEY}"
MODEL = b"raw model bytes" * 100
CODE_PATCH = "c" * 64  # the code package's patch that `panopipe package-app` registered
LOCATION = {
    "Bucket": STORE,
    **{f"{kind}PrefixLocation": f"{ACCOUNT}/nodePackages/pkg-1/{kind.lower()}" for kind in ("Binary", "Manifest")},
    **{f"{kind}PrefixLocation": f"{ACCOUNT}/nodePackages/pkg-1/{kind.lower()}" for kind in ("Generated", "Repo")},
}
#: Every variable a handler reads (the names ``lambda_handlers.settings`` defines): cleared around each call.
HANDLER_VARIABLES = {value for name, value in vars(cfg).items() if name.isupper() and isinstance(value, str)}
CHECKS = {
    "preparation": "CheckPreparation",
    "training": "CheckTraining",
    "compilation": "CheckCompilation",
    "package": "CheckRegistration",
    "deployment": "CheckDeployment",
    "rollback": "CheckRollback",
}


def resolve(name: str, value: Any) -> str:
    """A template value: a literal, an ``Fn::Sub`` of the account and Region, or ours (:data:`TOKENS`)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("Fn::Sub"), str):
        text = str(value["Fn::Sub"]).replace("${AWS::AccountId}", ACCOUNT).replace("${AWS::Region}", REGION)
        assert "${" not in text, text
        return text
    return TOKENS[name]


@dataclass(frozen=True)
class Machine:
    """The dev stage's definition, its functions by logical id, and the stored manifest template."""

    definition: State
    functions: dict[str, Function]
    template_key: str
    template: State
    settings: StepSettings
    spec: ApplicationSpec


@pytest.fixture(scope="module")
def machine(synthesized: Synthesized) -> Machine:
    functions = {}
    for logical_id, resource in synthesized.resources("dev", "Pipeline", "AWS::Lambda::Function").items():
        props = resource["Properties"]
        variables = {k: resolve(k, v) for k, v in props["Environment"]["Variables"].items()}
        functions[logical_id] = Function(props["Handler"], variables)
    (writer,) = synthesized.resources("dev", "Application", "Custom::PanoramaManifestTemplate").values()
    props = writer["Properties"]
    assert resolve("Bucket", props["Bucket"]) == ARTIFACTS
    step_settings = {f.environment[cfg.STEP_SETTINGS] for f in functions.values()}
    assert len(step_settings) == 1, "every function gets the same settings"
    template = json.loads(resolve("Body", props["Body"]))
    return Machine(
        definition(synthesized, "dev"),
        functions,
        props["Key"],
        template,
        parse(StepSettings, json.loads(step_settings.pop())),
        ApplicationSpec.from_json(json.dumps(template["spec"])),
    )


def instance(instance_id: str, name: str, status: str, **extra: Any) -> State:
    """An ApplicationInstance as ListApplicationInstances / DescribeApplicationInstance answer it."""
    return {
        "ApplicationInstanceId": instance_id,
        "Name": name,
        "Status": status,
        "DefaultRuntimeContextDevice": DEVICE_ID,
        "CreatedTime": "2026-05-01T00:00:00Z",
        **({"HealthStatus": "RUNNING"} if status == "DEPLOYMENT_SUCCEEDED" else {}),  # a healthy application
        **extra,
    }


@dataclass
class World:
    """Everything a run touches, and helpers that script how AWS answers it."""

    machine: Machine
    interpreter: Interpreter
    stub: Stubber
    s3: Any
    sqs: Any
    queue: str
    calls: list[tuple[str, State]]  # Panorama requests, in order
    hooks: dict[str, Hook] = field(default_factory=dict)  # Task state name -> called before each call
    throttled: set[str] = field(default_factory=set)  # operations whose next answer is a ThrottlingException

    @property
    def spec(self) -> ApplicationSpec:
        return self.machine.spec

    def before_task(self, name: str, data: State) -> None:
        if name in self.hooks:
            self.hooks[name](data)

    def run(self, given: State, name: str = RUN) -> Execution:
        return self.interpreter.run(given, name)

    def messages(self) -> list[State]:
        received = self.sqs.receive_message(QueueUrl=self.queue, MaxNumberOfMessages=10).get("Messages", [])
        return [json.loads(m["Body"]) for m in received]

    def requests(self, operation: str) -> list[State]:
        return [params for name, params in self.calls if name == operation]

    def put_model(self, key: str = MODEL_KEY) -> None:
        self.s3.put_object(Bucket=ARTIFACTS, Key=key, Body=MODEL)

    # --- SageMaker (moto): statuses set on its job objects before each poll -------------------------

    def train(self, polls: int, status: str = "Completed", metric: float = 0.93, reason: str | None = None) -> None:
        """The training job is InProgress for ``polls`` polls, then ``status`` (Completed: the model is written)."""

        def hook(data: State) -> None:
            job = sagemaker_backend().training_jobs[data["training"]["job_name"]]
            if data["training"]["polls"] < polls:
                job.training_job_status, job.secondary_status = "InProgress", "Training"
                return
            job.training_job_status = job.secondary_status = status
            job.failure_reason = reason
            if status == "Completed":
                job.final_metric_data_list = [{"MetricName": "validation:accuracy", "Value": metric}]
                bucket, key = split_s3_uri(job.model_artifacts["S3ModelArtifacts"])
                self.s3.put_object(Bucket=bucket, Key=key, Body=MODEL)

        self.hooks["CheckTraining"] = hook

    def compile(self, polls: int, status: str = "COMPLETED", reason: str = "") -> None:
        """The compilation job is INPROGRESS for ``polls`` polls, then ``status``."""

        def hook(data: State) -> None:
            job = sagemaker_backend().compilation_jobs[data["compilation"]["job_name"]]
            done = data["compilation"]["polls"] >= polls
            job.compilation_job_status, job.failure_reason = (status, reason) if done else ("INPROGRESS", "")

        self.hooks["CheckCompilation"] = hook

    # --- Panorama (Stubber): the exact conversation -------------------------------------------------

    def stub_code_package(self) -> None:
        """ValidateInput's lookup: the code package's latest patch, REGISTER_COMPLETED (panopipe package-app)."""
        code = {**self.package(), "PackageId": "pkg-code", "PackageName": self.spec.code_package}
        self.add("describe_package", code, {"PackageId": f"packageName/{self.spec.code_package}"})
        latest = {
            "IsLatestPatch": True,
            "PackageId": "pkg-code",
            "PackageName": self.spec.code_package,
            "PackageVersion": self.spec.package_version,
            "PatchVersion": CODE_PATCH,
            "Status": "REGISTER_COMPLETED",
        }
        self.add(
            "describe_package_version",
            latest,
            {"PackageId": "pkg-code", "PackageVersion": self.spec.package_version},
        )

    def add(self, operation: str, response: State, params: State) -> None:
        """Queue an answer; first a ThrottlingException if ``operation`` is in :attr:`throttled`."""
        if operation in self.throttled:
            self.throttled.discard(operation)
            self.stub.add_client_error(operation, "ThrottlingException", "Rate exceeded", 400, expected_params=params)
        self.stub.add_response(operation, response, params)

    def stub_registration(
        self, pending: int, *, final: str = "REGISTER_COMPLETED", description: str = "", new_package: bool = False
    ) -> None:
        """DescribePackage (or CreatePackage), RegisterPackageVersion, DescribePackageVersion per poll."""
        by_name = {"PackageId": f"packageName/{self.spec.model_package}"}
        if new_package:
            self.stub.add_client_error(
                "describe_package", "ResourceNotFoundException", "", 404, expected_params=by_name
            )
            created = {key: self.package()[key] for key in ("PackageId", "Arn", "StorageLocation")}
            self.add("create_package", created, {"PackageName": self.spec.model_package})
        else:
            self.add("describe_package", self.package(), by_name)
        version = {"PackageId": "pkg-1", "PackageVersion": self.spec.package_version, "PatchVersion": ANY}
        self.add("register_package_version", {}, {**version, "MarkLatest": True})
        for status in ["REGISTER_PENDING"] * pending + [final]:
            self.add("describe_package_version", self.package_version(status, description), version)

    def package(self) -> State:
        """DescribePackage's answer for the model package."""
        return {
            "PackageId": "pkg-1",
            "Arn": f"arn:aws:panorama:{REGION}:{ACCOUNT}:package/pkg-1",
            "PackageName": self.spec.model_package,
            "StorageLocation": LOCATION,
            "CreatedTime": "2026-01-01T00:00:00Z",
            "Tags": {},
        }

    def package_version(self, status: str, description: str = "") -> State:
        response = {
            "IsLatestPatch": True,
            "PackageId": "pkg-1",
            "PackageName": self.spec.model_package,
            "PackageVersion": self.spec.package_version,
            "PatchVersion": "0" * 64,  # not read by the handlers
            "Status": status,
        }
        return {**response, "StatusDescription": description} if description else response

    def stub_deployment(
        self, polls: int, *, final: str = "DEPLOYMENT_SUCCEEDED", running: tuple[State, ...] = (), **failure: Any
    ) -> None:
        """The Deploy step's calls, then DescribeApplicationInstance per poll."""
        self.stub_deploy(running)
        self.stub_instance("ai-new", polls, final, **failure)

    def stub_deploy(self, running: tuple[State, ...] = (), adopted: bool = False, planned: bool = False) -> None:
        """ListDevices (PlanDeployment; not if ``planned``), ListApplicationInstances, then
        CreateApplicationInstance (or, adopted, Describe)."""
        if not planned:
            self.add(
                "list_devices",
                {"Devices": [{"DeviceId": "device-0", "Name": "warehouse"}, {"DeviceId": DEVICE_ID, "Name": DEVICE}]},
                {},
            )
        self.add("list_application_instances", {"ApplicationInstances": list(running)}, DEVICE_PARAMS)
        if adopted:
            self.add("describe_application_instance", running[0], {"ApplicationInstanceId": "ai-new"})
            return
        params = {
            "Name": self.spec.instance_name(DEVICE),
            "Description": ANY,
            "DefaultRuntimeContextDevice": DEVICE_ID,
            "ManifestPayload": {"PayloadData": ANY},
            "ManifestOverridesPayload": {"PayloadData": ANY},
            "RuntimeRoleArn": ROLE,
            "Tags": {RUN_TAG: RUN, APP_TAG: "panopipe-dev"},
        }
        if running:
            params["ApplicationInstanceIdToReplace"] = running[0]["ApplicationInstanceId"]
        self.add("create_application_instance", {"ApplicationInstanceId": "ai-new"}, params)

    def stub_instance(self, instance_id: str, polls: int, final: str, **extra: Any) -> None:
        """DescribeApplicationInstance: DEPLOYMENT_IN_PROGRESS ``polls`` times, then ``final``."""
        name = self.spec.instance_name(DEVICE)
        for status in ["DEPLOYMENT_IN_PROGRESS"] * polls + [final]:
            self.add(
                "describe_application_instance",
                instance(instance_id, name, status, **(extra if status == final else {})),
                {"ApplicationInstanceId": instance_id},
            )


DEVICE_PARAMS = {"DeviceId": DEVICE_ID}


@pytest.fixture(scope="module")
def panorama_client() -> tuple[Any, list[tuple[str, State]]]:
    """One Panorama client for the module (building one parses the carried model), and its requests."""
    client = panorama.new_client(REGION)
    calls: list[tuple[str, State]] = []

    def record(params: State, model: Any, **_: Any) -> None:
        calls.append((model.name, copy.deepcopy(params)))

    client.meta.events.register("provide-client-params.panorama.*", record)
    return client, calls


@pytest.fixture
def world(
    aws: None, machine: Machine, panorama_client: tuple[Any, list[tuple[str, State]]], monkeypatch: pytest.MonkeyPatch
) -> Iterator[World]:
    monkeypatch.setenv("AWS_REGION", REGION)  # the Lambda runtime sets it
    s3, sns, sqs = clients.s3(), clients.sns(), boto3.client("sqs", region_name=REGION)
    for bucket in (DATA, ARTIFACTS, STORE):
        s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=ARTIFACTS, Key=machine.template_key, Body=json.dumps(machine.template).encode())
    for channel in ("train", "validation"):
        s3.put_object(Bucket=DATA, Key=f"datasets/people/{channel}/part-0.rec", Body=recordio(b"image-0", b"image-1"))
    assert sns.create_topic(Name=TOPIC.rsplit(":", 1)[1])["TopicArn"] == TOPIC
    queue = sqs.create_queue(QueueName="inbox")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=TOPIC, Protocol="sqs", Endpoint=queue_arn)

    client, calls = panorama_client
    calls.clear()
    every_variable = {name for function in machine.functions.values() for name in function.environment}
    interpreter = Interpreter(machine.definition, machine.functions, cleared=tuple(every_variable | HANDLER_VARIABLES))
    monkeypatch.setattr(handler_state, "time", types.SimpleNamespace(time=interpreter.now))
    monkeypatch.setattr(app_instances, "pause", lambda seconds: None)
    try:
        with Stubber(client) as stub:
            panorama.use_client(client)
            world = World(machine, interpreter, stub, s3, sqs, queue, calls)
            interpreter.before_task = world.before_task
            yield world
            stub.assert_no_pending_responses()
    finally:
        panorama.use_client(None)
        install(None)


def loop(section: str, polls: int) -> list[str]:
    """The states of one wait loop that reports IN_PROGRESS ``polls`` times."""
    check, choice, wait = CHECKS[section], f"{section.capitalize()} still in progress?", f"Wait for {section}"
    return [check, choice, *([wait, check, choice] * polls)]


def training_jobs() -> list[str]:
    return [s["TrainingJobName"] for s in clients.sagemaker().list_training_jobs()["TrainingJobSummaries"]]


def compilation_job() -> DescribeCompilationJobResponseTypeDef:
    name = names.job_name("panopipe-dev", "neo", RUN)
    return clients.sagemaker().describe_compilation_job(CompilationJobName=name)


#: The lock taken at once (no other run holds it).
LOCK_TAKEN = ["AcquireLock", "Lock still in progress?"]
#: A one-device fleet: the plan, the Map and its one batch's first state.
ONE_BATCH = ["PlanDeployment", "Deploy batches", "Wait for the batch's turn"]


def deploys_after_compilation(polls: int) -> list[str]:
    """The states from StartCompilation to Deployed of a run whose every loop polls ``polls`` times."""
    return [
        "StartCompilation",
        *loop("compilation", polls),
        *LOCK_TAKEN,
        "RegisterPackage",
        *loop("package", polls),
        *ONE_BATCH,
        "Deploy",
        *loop("deployment", polls),
        "Batch deployed",
        "FinishDeployment",
        "Deployed everywhere?",
        "ReleaseLock",
        "Notify success",
        "Deployed",
    ]


def nested(machine: Machine, name: str) -> State:
    """A state of the deployment Map's iteration."""
    return machine.definition["States"]["Deploy batches"]["ItemProcessor"]["States"][name]  # type: ignore[no-any-return]


# --- the three sources run to a deployment ---------------------------------------------------------


@pytest.mark.parametrize("polls", [2, 3])
def test_a_data_set_is_trained_evaluated_compiled_registered_and_deployed(world: World, polls: int) -> None:
    world.stub_code_package()
    old = instance("ai-old", world.spec.instance_name(DEVICE), "DEPLOYMENT_SUCCEEDED")
    world.train(polls, metric=0.93)
    world.compile(polls)
    world.stub_registration(polls)
    world.stub_deployment(polls, running=(old,))

    run = world.run({"dataset": DATASET})

    assert (run.status, run.error) == ("SUCCEEDED", None), run.cause
    assert run.path == [
        "Start",
        "ValidateInput",
        "Train first?",
        "Prepare first?",
        "StartTraining",
        *loop("training", polls),
        "Evaluate",
        *deploys_after_compilation(polls),
    ]
    loops = ("training", "compilation", "package", "deployment")
    assert run.waits == Counter({f"Wait for {s}": polls for s in loops} | {"Wait for the batch's turn": 1})
    # benchmarks/run_transitions.py: a data-set run with N polls per loop (one batch of devices).
    assert len(run.path) == 28 + 12 * polls
    assert sum(run.invocations.values()) == 15 + 4 * polls
    assert not run.retries

    output = run.output
    assert output is not None
    assert output["run"] == {"name": RUN, "started": "2026-06-01T10:00:00.000Z"}
    assert output["training"]["metric"] == {
        "name": "validation:accuracy",
        "value": 0.93,
        "threshold": 0.8,
        "goal": "maximize",
    }
    assert (output["training"]["status"], output["training"]["polls"]) == ("SUCCEEDED", polls + 1)
    (job,) = training_jobs()
    artifact = clients.sagemaker().describe_training_job(TrainingJobName=job)["ModelArtifacts"]["S3ModelArtifacts"]
    assert output["model"]["s3_uri"] == artifact == compilation_job()["InputConfig"]["S3Uri"]
    (registered,) = world.requests("RegisterPackageVersion")
    patch = output["package"]["patch_version"]
    assert registered["PatchVersion"] == patch and output["package"]["status"] == "SUCCEEDED"
    assert output["deployment"]["status"] == "SUCCEEDED"
    assert output["deployment"]["devices"] == [
        {
            "device": DEVICE,
            "device_id": DEVICE_ID,
            "instance_id": "ai-new",
            "replaced": "ai-old",
            "status": "SUCCEEDED",
            "status_description": "DEPLOYMENT_SUCCEEDED",
        }
    ]
    (created,) = world.requests("CreateApplicationInstance")
    graph = json.loads(created["ManifestPayload"]["PayloadData"])["nodeGraph"]
    pinned = {p["name"]: p["patchVersion"] for p in graph["packages"] if "patchVersion" in p}
    assert pinned[f"{ACCOUNT}::{world.spec.model_package}"] == patch
    assert pinned[f"{ACCOUNT}::{world.spec.code_package}"] == CODE_PATCH
    assert output["code_package"] == {
        "package_id": "pkg-code",
        "package_name": world.spec.code_package,
        "package_version": world.spec.package_version,
        "patch_version": CODE_PATCH,
    }
    assert {n["name"]: n.get("value") for n in graph["nodes"]}["device_id"] == DEVICE_ID

    good = read_json(world.s3, ARTIFACTS, last_good_key(DEVICE))
    assert (good["instance_id"], good["run"], good["package"]["patch_version"]) == ("ai-new", RUN, patch)
    assert good["manifest"] == created["ManifestPayload"]["PayloadData"]
    history = read_json(world.s3, ARTIFACTS, history_key(world.spec.model_package))
    assert history["patches"] == [{"package_version": world.spec.package_version, "patch_version": patch}]

    assert output["summary"]["status"] == "SUCCEEDED"
    (message,) = world.messages()
    assert message["Subject"] == f"[panopipe-dev] run {RUN} SUCCEEDED"
    assert "Metric: validation:accuracy = 0.93 (threshold 0.8)" in message["Message"]
    assert "instance ai-new replacing ai-old: SUCCEEDED" in message["Message"]
    assert f"Model package: {world.spec.model_package} version 1.0 patch {patch}" in message["Message"]
    assert f"Code package: {world.spec.code_package} version 1.0 patch {CODE_PATCH}" in message["Message"]


def test_a_model_skips_training_and_goes_straight_to_compilation(world: World) -> None:
    world.stub_code_package()
    world.put_model()
    world.compile(1)
    world.stub_registration(1, new_package=True)
    world.stub_deployment(1)

    run = world.run({"model": MODEL_URI})

    assert run.status == "SUCCEEDED", run.cause
    assert run.path == ["Start", "ValidateInput", "Train first?", *deploys_after_compilation(1)]
    assert (len(run.path), sum(run.invocations.values())) == (23 + 9, 12 + 3)  # model/job: 23 + 9·N, 12 + 3·N
    assert training_jobs() == []
    assert compilation_job()["InputConfig"]["S3Uri"] == MODEL_URI
    assert run.output is not None and run.output["source"] == {"kind": "model", "s3_uri": MODEL_URI}
    assert [m["Subject"] for m in world.messages()] == [f"[panopipe-dev] run {RUN} SUCCEEDED"]


def test_an_existing_training_job_skips_training_and_goes_straight_to_compilation(world: World) -> None:
    world.stub_code_package()
    sagemaker = clients.sagemaker()
    sagemaker.create_training_job(
        TrainingJobName="people-classifier-2026-05-30",
        AlgorithmSpecification={"TrainingImage": TOKENS[cfg.TRAINING_IMAGE], "TrainingInputMode": "File"},
        RoleArn=TOKENS[cfg.SAGEMAKER_ROLE_ARN],
        OutputDataConfig={"S3OutputPath": f"s3://{ARTIFACTS}/external/"},
        ResourceConfig={"InstanceType": "ml.g4dn.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 50},
        StoppingCondition={"MaxRuntimeInSeconds": 3600},
    )
    artifact = sagemaker.describe_training_job(TrainingJobName="people-classifier-2026-05-30")["ModelArtifacts"]
    world.put_model(split_s3_uri(artifact["S3ModelArtifacts"])[1])
    world.compile(0)
    world.stub_registration(0)
    world.stub_deployment(0)

    run = world.run({"training_job": "people-classifier-2026-05-30"})

    assert run.status == "SUCCEEDED", run.cause
    assert run.path == ["Start", "ValidateInput", "Train first?", *deploys_after_compilation(0)]
    assert training_jobs() == ["people-classifier-2026-05-30"], "no training job of our own"
    assert compilation_job()["InputConfig"]["S3Uri"] == artifact["S3ModelArtifacts"]


# --- failure paths ----------------------------------------------------------------------------------


#: Steps after which a run may hold the deployment lock: their failure releases it first.
LOCKED = {"AcquireLock", "CheckLock", "RegisterPackage", "CheckRegistration", "PlanDeployment", "FinishDeployment"}


def failed_at(step: str) -> list[str]:
    """How a run ends when ``step`` raises: its recorder, [the lock's release,] the failure report, the Fail state."""
    release = ["Release lock of a failed run"] if step in LOCKED else []
    return [step, f"{step} failed", *release, "Notify failure", "Run failed"]


def test_an_invalid_input_fails_the_run_before_anything_starts(world: World) -> None:
    run = world.run({"dataset": f"s3://{DATA}/datasets/missing/"})

    assert (run.status, run.error) == ("FAILED", "InvalidInput")
    assert run.cause is not None and run.cause.startswith(f"input.dataset = 's3://{DATA}/datasets/missing/': ")
    assert run.path == ["Start", *failed_at("ValidateInput")]
    assert training_jobs() == [] and world.calls == []
    assert [m["Subject"] for m in world.messages()] == [f"[panopipe-dev] run {RUN} FAILED"]


def test_a_code_package_never_registered_fails_the_run_before_training(world: World) -> None:
    """ValidateInput looks the code package up first thing: no run trains for hours, then cannot deploy."""
    world.stub.add_response(
        "describe_package",
        {**world.package(), "PackageId": "pkg-code", "PackageName": world.spec.code_package},
        {"PackageId": f"packageName/{world.spec.code_package}"},
    )
    world.stub.add_client_error(
        "describe_package_version",
        "ResourceNotFoundException",
        "no version",
        404,
        expected_params={"PackageId": "pkg-code", "PackageVersion": world.spec.package_version},
    )

    run = world.run({"dataset": DATASET})

    assert (run.status, run.error) == ("FAILED", "InvalidInput")
    assert run.cause == (
        f"code package {world.spec.code_package} {world.spec.package_version} has no registered version: "
        "run `panopipe package-app --config <file>`"
    )
    assert run.path == ["Start", *failed_at("ValidateInput")]
    assert training_jobs() == []
    (message,) = world.messages()
    assert "panopipe package-app" in message["Message"]


def test_a_failed_training_job_fails_the_run_with_its_reason(world: World) -> None:
    world.stub_code_package()
    reason = "AlgorithmError: ClientError: no .rec file found in the train channel"
    world.train(1, status="Failed", reason=reason)

    run = world.run({"dataset": DATASET})

    job = names.job_name("panopipe-dev", "train", RUN)
    assert (run.status, run.error) == ("FAILED", "TrainingFailed")
    assert run.cause == f"training job {job} failed: {reason}"
    assert run.path == [
        "Start",
        "ValidateInput",
        "Train first?",
        "Prepare first?",
        "StartTraining",
        "CheckTraining",
        "Training still in progress?",
        "Wait for training",
        *failed_at("CheckTraining"),
    ]
    assert run.output is not None and run.output["failed_step"] == "CheckTraining"
    assert run.output["error"]["Error"] == "TrainingFailed"
    assert clients.sagemaker().list_compilation_jobs()["CompilationJobSummaries"] == []
    (message,) = world.messages()
    assert message["Subject"] == f"[panopipe-dev] run {RUN} FAILED"
    assert "Failed step: CheckTraining" in message["Message"] and reason in message["Message"]


def test_a_metric_below_the_gate_fails_the_run_before_compilation(world: World) -> None:
    world.stub_code_package()
    world.train(0, metric=0.5)

    run = world.run({"dataset": DATASET})

    assert (run.status, run.error) == ("FAILED", "MetricBelowThreshold")
    assert run.cause == "metric validation:accuracy = 0.5 below threshold 0.8"
    assert run.path[-6:] == ["CheckTraining", "Training still in progress?", *failed_at("Evaluate")]
    assert clients.sagemaker().list_compilation_jobs()["CompilationJobSummaries"] == []
    assert [name for name, _ in world.calls] == ["DescribePackage", "DescribePackageVersion"], "only the code lookup"


def test_a_failed_compilation_fails_the_run_with_the_reason_verbatim(world: World) -> None:
    world.stub_code_package()
    reason = (
        "ClientError: InputConfiguration: Framework cannot load MXNET model. "
        "Please make sure data_shape={'data': [1, 3, 224, 224]} is correct"
    )
    world.put_model()
    world.compile(1, status="FAILED", reason=reason)

    run = world.run({"model": MODEL_URI})

    job = names.job_name("panopipe-dev", "neo", RUN)
    assert (run.status, run.error, run.cause) == (
        "FAILED",
        "CompilationFailed",
        f"compilation job {job} failed: {reason}",
    )
    assert run.path[3:] == [
        "StartCompilation",
        *loop("compilation", 0),
        "Wait for compilation",
        *failed_at("CheckCompilation"),
    ]
    assert reason in world.messages()[0]["Message"]


def test_a_failed_package_registration_fails_the_run(world: World) -> None:
    world.stub_code_package()
    description = "Invalid model descriptor: framework version 1.9 is not supported"
    world.put_model()
    world.compile(0)
    world.stub_registration(1, final="FAILED", description=description, new_package=True)

    run = world.run({"model": MODEL_URI})

    (registered,) = world.requests("RegisterPackageVersion")
    package = f"package {world.spec.model_package} {world.spec.package_version} patch {registered['PatchVersion']}"
    assert (run.status, run.error, run.cause) == ("FAILED", "PackageRegistrationFailed", f"{package}: {description}")
    assert run.path[-9:] == [
        "RegisterPackage",
        *loop("package", 0),
        "Wait for package",
        *failed_at("CheckRegistration"),
    ]
    assert world.requests("CreateApplicationInstance") == []
    lock = read_json(world.s3, ARTIFACTS, "locks/deployment.json")
    assert lock["holder"] is None and lock["deployed"] is None, "released; nothing deployed"


def test_a_failed_deployment_is_rolled_back_to_the_last_good_one_and_the_run_fails(world: World) -> None:
    world.stub_code_package()
    name = world.spec.instance_name(DEVICE)
    good_graph = documents.graph(
        world.spec,
        ACCOUNT,
        values={"device_id": DEVICE_ID, "region": REGION},
        patch_versions={world.spec.model_package: "b" * 64},
    )
    good = {
        "instance_id": "ai-good",
        "device_id": DEVICE_ID,
        "instance_name": name,
        "manifest": validation.payload(good_graph),
        "overrides": validation.payload(world.machine.template["overrides"]),
        "run": "ds-people-earlier00000",
        "package": {"package_name": world.spec.model_package, "patch_version": "b" * 64},
    }
    write_json(world.s3, ARTIFACTS, last_good_key(DEVICE), good)
    world.put_model()
    world.compile(0)
    world.stub_registration(0)
    world.stub_deployment(
        1,
        final="DEPLOYMENT_FAILED",
        running=(instance("ai-good", name, "DEPLOYMENT_SUCCEEDED"),),
        StatusDescription="Model package failed to load",
        RuntimeContextStates=[
            {
                "RuntimeContextName": "code_node",
                "DesiredState": "RUNNING",
                "DeviceReportedStatus": "LAUNCH_ERROR",
                "DeviceReportedTime": "2026-06-01T10:30:00Z",
            }
        ],
    )
    failed = instance("ai-new", name, "DEPLOYMENT_FAILED", Tags={RUN_TAG: RUN})
    world.stub.add_response(
        "list_application_instances",
        {"ApplicationInstances": [failed, instance("ai-good", name, "REMOVAL_SUCCEEDED")]},
        DEVICE_PARAMS,
    )
    world.stub.add_response(
        "create_application_instance",
        {"ApplicationInstanceId": "ai-rollback"},
        {
            "Name": name,
            "Description": f"rollback of {RUN} to ds-people-earlier00000",
            "DefaultRuntimeContextDevice": DEVICE_ID,
            "ManifestPayload": {"PayloadData": good["manifest"]},
            "ManifestOverridesPayload": {"PayloadData": good["overrides"]},
            "RuntimeRoleArn": ROLE,
            "ApplicationInstanceIdToReplace": "ai-new",
            "Tags": {ROLLBACK_TAG: RUN, APP_TAG: "panopipe-dev"},
        },
    )
    world.stub_instance("ai-rollback", 1, "DEPLOYMENT_SUCCEEDED")

    run = world.run({"model": MODEL_URI})

    assert (run.status, run.error) == ("FAILED", "DeploymentFailed")
    assert run.cause == (
        f"deployment FAILED on 1 of 1 devices (0 succeeded; 1 rolled back): {DEVICE}: FAILED - DEPLOYMENT_FAILED: "
        "Model package failed to load (device reported: code_node LAUNCH_ERROR)"
    )
    assert run.path[-18:] == [
        "Deploy",
        *loop("deployment", 1),
        "Rollback",
        *loop("rollback", 1),
        "Batch rolled back",
        "FinishDeployment",
        "Deployed everywhere?",
        "Release lock of a failed run",
        "Notify failure",
        "Run failed",
    ]
    assert run.output is not None and run.output["failed_step"] == "CheckDeployment"
    (restored,) = run.output["rollback"]["devices"]
    assert (restored["instance_id"], restored["replaced"], restored["status"]) == ("ai-rollback", "ai-new", "SUCCEEDED")
    assert read_json(world.s3, ARTIFACTS, last_good_key(DEVICE)) == good, "a failed deployment never becomes last good"
    (message,) = world.messages()
    text = message["Message"]
    assert message["Subject"] == f"[panopipe-dev] run {RUN} FAILED"
    assert "Failed step: CheckDeployment" in text
    assert "Error: DeploymentFailed" in text and "Model package failed to load" in text
    assert "Rollback: SUCCEEDED" in text and "instance ai-rollback replacing ai-new: SUCCEEDED" in text


@pytest.mark.parametrize(
    ("operation", "step"),
    [
        ("describe_package_version", "CheckRegistration"),
        ("list_devices", "PlanDeployment"),
    ],
)
def test_a_throttled_call_is_retried_by_the_state_machine(world: World, operation: str, step: str) -> None:
    world.stub_code_package()
    world.throttled.add(operation)  # its first answer is a ThrottlingException (HTTP 400)
    world.put_model()
    world.compile(0)
    world.stub_registration(0)
    world.stub_deployment(0)

    run = world.run({"model": MODEL_URI})

    assert run.status == "SUCCEEDED", run.cause
    assert run.retries == Counter({step: 1})
    assert run.invocations[step] == 2
    assert run.path == ["Start", "ValidateInput", "Train first?", *deploys_after_compilation(0)]


def test_a_loop_past_its_deadline_times_out_and_stops_the_job(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    world.stub_code_package()
    world.put_model()
    world.compile(10**6)  # never done
    sagemaker = clients.sagemaker()
    stopper = boto3.client("sagemaker", region_name=REGION)  # moto has no StopCompilationJob
    monkeypatch.setattr(sagemaker, "stop_compilation_job", stopper.stop_compilation_job)
    job = names.job_name("panopipe-dev", "neo", RUN)
    with Stubber(stopper) as stop:
        stop.add_response("stop_compilation_job", {}, {"CompilationJobName": job})

        run = world.run({"model": MODEL_URI})

        stop.assert_no_pending_responses()
    timeout = world.machine.settings.runs.compilation_timeout_seconds
    poll = world.machine.definition["States"]["Wait for compilation"]["Seconds"]
    assert (run.status, run.error) == ("FAILED", "StepTimedOut")
    assert run.cause == f"compilation job {job} still INPROGRESS after the {timeout} s timeout; stopped it"
    assert run.waits == Counter({"Wait for compilation": timeout // poll}), "the deadline is the configured timeout"
    assert run.path[-4:] == failed_at("CheckCompilation")


def test_a_deployment_past_its_deadline_is_rolled_back(world: World) -> None:
    world.stub_code_package()
    world.put_model()
    world.compile(0)
    world.stub_registration(0)
    timeout = world.machine.settings.runs.deployment_timeout_seconds
    poll = nested(world.machine, "Wait for deployment")["Seconds"]
    world.stub_deployment(timeout // poll, final="DEPLOYMENT_IN_PROGRESS")

    run = world.run({"model": MODEL_URI})

    assert (run.status, run.error) == ("FAILED", "StepTimedOut")
    assert run.cause is not None and run.cause.startswith(
        f"deployment TIMED_OUT on 1 of 1 devices (0 succeeded; 0 rolled back, 0 rollback failed, 1 without an "
        f"earlier good one): {DEVICE}: TIMED_OUT - still"
    )
    assert run.waits["Wait for deployment"] == timeout // poll
    assert run.path[-10:] == [
        "Deployment still in progress?",
        "Rollback",
        *loop("rollback", 0),
        "Batch rolled back",
        "FinishDeployment",
        "Deployed everywhere?",
        "Release lock of a failed run",
        "Notify failure",
        "Run failed",
    ]
    assert run.output is not None and run.output["failed_step"] == "CheckDeployment"
    (skipped,) = run.output["rollback"]["devices"]
    assert (skipped["status"], skipped["status_description"]) == ("SKIPPED", rollback.NO_EARLIER_GOOD)
    assert len(world.requests("CreateApplicationInstance")) == 1, "nothing to roll back to: nothing created"


# --- idempotency ----------------------------------------------------------------------------------------


def test_start_steps_rerun_with_the_same_input_start_nothing_twice(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.train(0)
    invoke = world.interpreter.invoke
    world.stub_code_package()
    state = invoke("ValidateInput", {"input": {"dataset": DATASET}, "run": {"name": RUN, "started": "t"}})

    trained = [invoke("StartTraining", state) for _ in range(2)]  # the second create answers ResourceInUse
    assert trained[0] == trained[1], "the rerun adopts the job, and its deadline counts from its creation"
    assert training_jobs() == [names.job_name("panopipe-dev", "train", RUN)]

    state = invoke("CheckTraining", trained[1])
    compiled = [invoke("StartCompilation", state) for _ in range(2)]
    assert compiled[0]["compilation"]["job_name"] == compiled[1]["compilation"]["job_name"]
    assert abs(compiled[0]["compilation"]["deadline"] - compiled[1]["compilation"]["deadline"]) <= 1
    assert len(clients.sagemaker().list_compilation_jobs()["CompilationJobSummaries"]) == 1

    by_name = {"PackageId": f"packageName/{world.spec.model_package}"}
    version = {"PackageId": "pkg-1", "PackageVersion": world.spec.package_version, "PatchVersion": ANY}
    world.add("describe_package", world.package(), by_name)
    world.add("register_package_version", {}, {**version, "MarkLatest": True})
    registered = invoke("RegisterPackage", compiled[1])
    world.add("describe_package", world.package(), by_name)
    world.stub.add_client_error(
        "register_package_version", "ConflictException", "exists", 409, expected_params={**version, "MarkLatest": True}
    )
    world.add("describe_package_version", world.package_version("REGISTER_PENDING"), version)  # it exists: adopted
    assert invoke("RegisterPackage", compiled[1])["package"] == registered["package"] | {"deadline": ANY}
    world.add("describe_package_version", world.package_version("REGISTER_COMPLETED"), version)
    state = invoke("CheckRegistration", registered)

    world.stub_deploy()
    tagged = instance("ai-new", world.spec.instance_name(DEVICE), "DEPLOYMENT_IN_PROGRESS", Tags={RUN_TAG: RUN})
    world.stub_deploy((tagged,), adopted=True, planned=True)
    (batch,) = invoke("PlanDeployment", state)["fleet"]["batches"]
    iteration = {key: state[key] for key in ("run", "model", "package", "code_package")} | {"batch": batch}
    deployed = [invoke("Deploy", iteration) for _ in range(2)]
    assert deployed[0]["deployment"]["devices"] == deployed[1]["deployment"]["devices"]
    assert len(world.requests("CreateApplicationInstance")) == 1
    assert len(world.requests("RegisterPackageVersion")) == 2, "the second one was refused: nothing new registered"


def test_a_start_step_retried_after_its_job_was_created_adopts_it(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.stub_code_package()
    real = training.start_training
    lost: list[Exception] = [TransientError("ReadTimeoutError: the response to CreateTrainingJob was lost")]

    def flaky(event: State, context: Any = None) -> State:
        result: State = real(event, context)
        if lost:  # the retry's create finds the job: ResourceInUse
            raise lost.pop()
        return result

    monkeypatch.setattr(training, "start_training", flaky)
    world.train(1)
    world.compile(0)
    world.stub_registration(0)
    world.stub_deployment(0)

    run = world.run({"dataset": DATASET})

    assert run.status == "SUCCEEDED", run.cause
    assert run.retries == Counter({"StartTraining": 1}) and run.invocations["StartTraining"] == 2
    assert training_jobs() == [names.job_name("panopipe-dev", "train", RUN)]
