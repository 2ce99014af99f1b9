"""Deployment, its check and the rollback: S3 through moto, Panorama through a Stubber on the carried model."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from lambda_handlers import app_instances
from lambda_handlers import deployment as dep
from lambda_handlers import rollback as rb
from lambda_handlers import settings as cfg
from lambda_handlers.app_instances import APP_TAG, CREATE_INTERVAL_SECONDS, ROLLBACK_TAG, RUN_TAG
from lambda_handlers.artifacts import last_good_key, model_spec, read_json, write_json
from lambda_handlers.errors import InvalidInput
from lambda_handlers.settings import StepSettings, install
from lambda_handlers.state import SKIPPED
from panorama_app.manifest import documents, validation
from panorama_app.manifest.spec import Parameter
from tests.handlers.conftest import ACCOUNT, make_settings
from tests.handlers.test_package_registration import ARTIFACTS, SPEC, template_document

TEMPLATE_KEY = "panorama/application-manifest.json"
ROLE = "arn:aws:iam::123456789012:role/service-role/panopipe-dev-runtime"
RUN = "ds-people-0123456789ab"
PATCH = "a" * 64
PACKAGE = {
    "package_id": "pkg-1",
    "package_name": SPEC.model_package,
    "package_version": "1.0",
    "patch_version": PATCH,
    "model_sha256": "m" * 64,
    "descriptor_sha256": "d" * 64,
}
CODE_PATCH = "c" * 64
#: The code package's registered patch, as validate_input leaves it.
CODE_PACKAGE = {
    "package_id": "pkg-code",
    "package_name": SPEC.code_package,
    "package_version": "1.0",
    "patch_version": CODE_PATCH,
}
#: The run's model, as validate_input or check_training leave it (the configured model here).
MODEL = {
    "s3_uri": "s3://bucket/model.tar.gz",
    "framework": SPEC.framework,
    "framework_version": SPEC.framework_version,
    "input_name": SPEC.input_name,
    "input_shape": list(SPEC.input_shape),
}
BY_ID, BY_NAME = "device-111", "lobby-appliance"
NAME_ID = "device-222"
DEVICES = [{"id": BY_ID}, {"name": BY_NAME}]


@pytest.fixture
def s3(aws: None, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv(cfg.ARTIFACTS_BUCKET, ARTIFACTS)
    monkeypatch.setenv(cfg.MANIFEST_TEMPLATE_KEY, TEMPLATE_KEY)
    monkeypatch.setenv(cfg.RUNTIME_ROLE_ARN, ROLE)
    client = boto3.client("s3", region_name="us-east-1")
    client.create_bucket(Bucket=ARTIFACTS)
    client.put_object(Bucket=ARTIFACTS, Key=TEMPLATE_KEY, Body=json.dumps(template_document(SPEC)).encode())
    return client


@pytest.fixture
def two_devices(settings: StepSettings) -> StepSettings:
    """One device by id, one by name; deployments time out after 900 s."""
    value = make_settings({"devices": DEVICES, "runs.deployment_timeout_seconds": 900})
    install(value)  # the settings fixture uninstalls it
    return value


@pytest.fixture
def pauses(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The pauses between creates, on a clock that stands still (so each is the whole interval)."""
    waited: list[float] = []
    monkeypatch.setattr(app_instances, "pause", waited.append)
    monkeypatch.setattr(app_instances, "clock", lambda: 0.0)
    return waited


#: A deployment Map iteration's batch: both devices (PlanDeployment resolved the name).
BATCH: dict[str, Any] = {
    "index": 0,
    "start_at": "2026-05-01T00:00:00.000Z",
    "devices": [{"device": BY_ID, "device_id": BY_ID}, {"device": BY_NAME, "device_id": NAME_ID}],
}


def _state(**sections: Any) -> dict[str, Any]:
    """What one iteration of the deployment Map receives (its ItemSelector), or more."""
    package = {**PACKAGE, "status": "SUCCEEDED", "deadline": 0, "polls": 3, "deregistered": []}
    run = {"name": RUN, "started": "2026-05-01T00:00:00Z"}
    return {"run": run, "model": MODEL, "code_package": CODE_PACKAGE, "package": package, "batch": BATCH, **sections}


def _graph(device_id: str) -> str:
    document = documents.graph(
        SPEC,
        ACCOUNT,
        values={"device_id": device_id, "region": "us-east-1"},
        patch_versions={SPEC.model_package: PATCH, SPEC.code_package: CODE_PATCH},
    )
    return validation.payload(document)


OVERRIDES = validation.payload(template_document(SPEC)["overrides"])


def _instance(instance_id: str, name: str, status: str, **extra: Any) -> dict[str, Any]:
    return {
        "ApplicationInstanceId": instance_id,
        "Name": name,
        "Status": status,
        "DefaultRuntimeContextDevice": extra.pop("device", BY_ID),
        "CreatedTime": extra.pop("created", "2026-04-01T00:00:00Z"),
        **extra,
    }


def _create_params(device_id: str, label: str, replaced: str | None, tags: dict[str, str]) -> dict[str, Any]:
    params = {
        "Name": SPEC.instance_name(label),
        "Description": f"{RUN}: {SPEC.model_package} 1.0 patch {PATCH[:12]}, code patch {CODE_PATCH[:12]}",
        "DefaultRuntimeContextDevice": device_id,
        "ManifestPayload": {"PayloadData": _graph(device_id)},
        "ManifestOverridesPayload": {"PayloadData": OVERRIDES},
        "RuntimeRoleArn": ROLE,
        "Tags": {**tags, APP_TAG: "panopipe-dev"},
    }
    if replaced:
        params["ApplicationInstanceIdToReplace"] = replaced
    return params


# --- deploy -----------------------------------------------------------------------------------------


def test_deploy_replaces_the_running_instance_on_each_device(
    s3: Any, stub: Stubber, two_devices: StepSettings, pauses: list[float]
) -> None:
    old = SPEC.instance_name(BY_ID)
    stub.add_response(
        "list_application_instances",
        {
            "ApplicationInstances": [
                _instance("ai-older", old, "DEPLOYMENT_SUCCEEDED", created="2026-01-01T00:00:00Z"),
                _instance("ai-removed", old, "REMOVAL_SUCCEEDED"),
                _instance("ai-other-app", "someone-elses-app", "DEPLOYMENT_SUCCEEDED"),
            ],
            "NextToken": "more",
        },
        {"DeviceId": BY_ID},
    )
    stub.add_response(
        "list_application_instances",
        {"ApplicationInstances": [_instance("ai-current", old, "DEPLOYMENT_SUCCEEDED")]},
        {"DeviceId": BY_ID, "NextToken": "more"},
    )
    stub.add_response(
        "create_application_instance",
        {"ApplicationInstanceId": "ai-new-1"},
        _create_params(BY_ID, BY_ID, "ai-current", {RUN_TAG: RUN}),
    )
    # an older deployed instance of the application, left by an earlier fault: removed
    stub.add_response("remove_application_instance", {}, {"ApplicationInstanceId": "ai-older"})
    stub.add_response("list_application_instances", {"ApplicationInstances": []}, {"DeviceId": NAME_ID})
    stub.add_response(
        "create_application_instance",
        {"ApplicationInstanceId": "ai-new-2"},
        _create_params(NAME_ID, BY_NAME, None, {RUN_TAG: RUN}),
    )
    before = int(time.time())

    result = dep.deploy(_state())

    section = result["deployment"]
    assert section["status"] == "IN_PROGRESS" and section["polls"] == 0
    assert before + 900 <= section["deadline"] <= int(time.time()) + 900
    assert section["devices"] == [
        {
            "device": BY_ID,
            "device_id": BY_ID,
            "instance_id": "ai-new-1",
            "replaced": "ai-current",
            "status": "IN_PROGRESS",
            "status_description": "deployment requested",
        },
        {
            "device": BY_NAME,
            "device_id": NAME_ID,
            "instance_id": "ai-new-2",
            "replaced": None,
            "status": "IN_PROGRESS",
            "status_description": "deployment requested",
        },
    ]
    assert pauses == [CREATE_INTERVAL_SECONDS], "one pause between the two creates"
    sent = read_json(s3, ARTIFACTS, f"runs/{RUN}/deployment/{BY_NAME}.json")
    assert sent["manifest"] == _graph(NAME_ID) and sent["overrides"] == OVERRIDES
    assert sent["package"] == PACKAGE and sent["instance_name"] == SPEC.instance_name(BY_NAME)
    assert sent["code_package"] == CODE_PACKAGE
    graph = json.loads(sent["manifest"])["nodeGraph"]
    pinned = {p["name"]: p.get("patchVersion") for p in graph["packages"]}
    assert pinned[f"{ACCOUNT}::{SPEC.model_package}"] == PATCH, "the run's new model patch"
    assert pinned[f"{ACCOUNT}::{SPEC.code_package}"] == CODE_PATCH, "the code patch validate_input found"
    values = {n["name"]: n.get("value") for n in graph["nodes"]}
    assert values["device_id"] == NAME_ID and values["region"] == "us-east-1"


def test_deploy_retried_adopts_the_instances_of_this_run(
    s3: Any, stub: Stubber, two_devices: StepSettings, pauses: list[float]
) -> None:
    for device_id, label, new, old in ((BY_ID, BY_ID, "ai-new-1", "ai-current"), (NAME_ID, BY_NAME, "ai-new-2", None)):
        name = SPEC.instance_name(label)
        listed = [_instance(new, name, "DEPLOYMENT_IN_PROGRESS", device=device_id, Tags={RUN_TAG: RUN})]
        if old:
            listed.append(_instance(old, name, "DEPLOYMENT_SUCCEEDED", device=device_id))
        stub.add_response("list_application_instances", {"ApplicationInstances": listed}, {"DeviceId": device_id})
        described = _instance(new, name, "DEPLOYMENT_IN_PROGRESS", device=device_id)
        if old:
            described["ApplicationInstanceIdToReplace"] = old
        stub.add_response("describe_application_instance", described, {"ApplicationInstanceId": new})

    result = dep.deploy(_state())

    devices = result["deployment"]["devices"]
    assert [(d["instance_id"], d["replaced"]) for d in devices] == [("ai-new-1", "ai-current"), ("ai-new-2", None)]
    assert pauses == []


def test_a_replacement_refused_by_panorama_fails_that_device_alone_with_the_reason(
    s3: Any, stub: Stubber, two_devices: StepSettings, pauses: list[float]
) -> None:
    """Someone else replaces the instance already (ConflictException): that device FAILED, the next one deploys."""
    old = SPEC.instance_name(BY_ID)
    stub.add_response(
        "list_application_instances",
        {"ApplicationInstances": [_instance("ai-current", old, "DEPLOYMENT_SUCCEEDED")]},
        {"DeviceId": BY_ID},
    )
    reason = "ApplicationInstanceIdToReplace ai-current: it is already being replaced by ai-other (DEPLOYMENT_PENDING)"
    stub.add_client_error(
        "create_application_instance",
        "ConflictException",
        reason,
        409,
        modeled_fields={"Message": reason, "ResourceId": "ai-current", "ResourceType": "ApplicationInstance"},
    )
    stub.add_response("list_application_instances", {"ApplicationInstances": []}, {"DeviceId": NAME_ID})
    stub.add_response(
        "create_application_instance",
        {"ApplicationInstanceId": "ai-new-2"},
        _create_params(NAME_ID, BY_NAME, None, {RUN_TAG: RUN}),
    )

    result = dep.deploy(_state())

    refused, deployed = result["deployment"]["devices"]
    assert (refused["status"], refused["instance_id"], refused["replaced"]) == ("FAILED", None, "ai-current")
    assert refused["status_description"] == f"CreateApplicationInstance refused: ConflictException: {reason}"
    assert (deployed["status"], deployed["instance_id"]) == ("IN_PROGRESS", "ai-new-2")
    assert result["deployment"]["status"] == "IN_PROGRESS", "the batch waits for the others, then rolls back"


def test_a_throttled_create_fails_the_batch_for_the_state_machine_to_retry(
    s3: Any, stub: Stubber, two_devices: StepSettings, pauses: list[float]
) -> None:
    from lambda_handlers.errors import Throttled

    stub.add_response("list_application_instances", {"ApplicationInstances": []}, {"DeviceId": BY_ID})
    stub.add_client_error("create_application_instance", "ThrottlingException", "Rate exceeded", 400)
    with pytest.raises(Throttled):
        dep.deploy(_state())


def test_deploy_replaces_the_deployed_instance_and_removes_further_ones(
    s3: Any, stub: Stubber, two_devices: StepSettings, pauses: list[float]
) -> None:
    """Never two instances of the application on a device, whatever an earlier fault left there."""
    name = SPEC.instance_name(BY_ID)
    listed = [
        _instance("ai-failed", name, "DEPLOYMENT_FAILED", created="2026-04-03T00:00:00Z"),
        _instance("ai-deploying", name, "DEPLOYMENT_IN_PROGRESS", created="2026-04-02T00:00:00Z"),
        _instance("ai-running", name, "DEPLOYMENT_SUCCEEDED", created="2026-04-01T00:00:00Z"),
        _instance("ai-removing", name, "REMOVAL_IN_PROGRESS"),
    ]
    stub.add_response("list_application_instances", {"ApplicationInstances": listed}, {"DeviceId": BY_ID})
    stub.add_response(
        "create_application_instance",
        {"ApplicationInstanceId": "ai-new"},
        _create_params(BY_ID, BY_ID, "ai-running", {RUN_TAG: RUN}),
    )
    stub.add_response("remove_application_instance", {}, {"ApplicationInstanceId": "ai-deploying"})
    batch = {**BATCH, "devices": BATCH["devices"][:1]}

    (device,) = dep.deploy(_state(batch=batch))["deployment"]["devices"]

    assert (device["instance_id"], device["replaced"]) == ("ai-new", "ai-running")
    without_deployed = app_instances.running(listed[:2], name)
    assert without_deployed and without_deployed["ApplicationInstanceId"] == "ai-deploying"


def test_the_pause_counts_the_time_the_calls_between_two_creates_took(monkeypatch: pytest.MonkeyPatch) -> None:
    # the clock read when each create starts, and before a wait: 10.0 | 10.4 → wait → 11.0 | 12.6, 12.6
    ticks, waited = iter([10.0, 10.4, 11.0, 12.6, 12.6]), list[float]()
    monkeypatch.setattr(app_instances, "clock", lambda: next(ticks))
    monkeypatch.setattr(app_instances, "pause", waited.append)
    pace = app_instances.Pacer()
    pace()  # the first create: at once (10.0)
    pace()  # 0.4 s of calls since: waits the rest of the second
    pace()  # 1.6 s since: no wait
    assert waited == [pytest.approx(0.6)]


def test_a_later_batch_waits_a_second_before_its_first_create(
    s3: Any, stub: Stubber, two_devices: StepSettings, pauses: list[float]
) -> None:
    stub.add_response("list_application_instances", {"ApplicationInstances": []}, {"DeviceId": BY_ID})
    stub.add_response(
        "create_application_instance",
        {"ApplicationInstanceId": "ai-new"},
        _create_params(BY_ID, BY_ID, None, {RUN_TAG: RUN}),
    )
    dep.deploy(_state(batch={**BATCH, "index": 3, "devices": BATCH["devices"][:1]}))
    assert pauses == [CREATE_INTERVAL_SECONDS]


@pytest.mark.parametrize(
    ("framework", "version", "shape", "layout"),
    [("PYTORCH", "1.8", [1, 3, 512, 512], "NCHW"), ("TENSORFLOW", "2.4", [1, 300, 300, 3], "NHWC")],
)
def test_a_model_given_with_the_run_reaches_the_graph_as_registered(
    s3: Any, two_devices: StepSettings, framework: str, version: str, shape: list[int], layout: str
) -> None:
    """The input parameters of the deployed graph come from the run's model, like its descriptor."""
    model: Any = {
        **MODEL,
        "framework": framework,
        "framework_version": version,
        "input_name": "input0",
        "input_shape": shape,
    }
    state: Any = _state(model=model)
    (plan, _) = dep._plans(state, {BY_ID: BY_ID, BY_NAME: NAME_ID})
    values = {n["name"]: n.get("value") for n in json.loads(plan.manifest)["nodeGraph"]["nodes"]}
    assert values["input_shape"] == ",".join(map(str, shape))
    assert (values["input_layout"], values["input_name"]) == (layout, "input0")
    descriptor = documents.model_descriptor(model_spec(SPEC, model))  # what RegisterPackage uploads
    assert descriptor["mlModelDescriptor"]["inputs"] == [{"name": "input0", "shape": shape}]
    assert descriptor["mlModelDescriptor"]["framework"] == framework


def test_a_manifest_over_the_payload_limit_is_refused_before_calling_the_api(
    s3: Any, stub: Stubber, settings: StepSettings
) -> None:
    big = Parameter("notes", "string", "x" * 52_000, "Notes", "Operator notes.")
    spec = replace(SPEC, parameters=(*SPEC.parameters, big))
    document = template_document(SPEC)
    document["spec"] = json.loads(spec.to_json())
    s3.put_object(Bucket=ARTIFACTS, Key=TEMPLATE_KEY, Body=json.dumps(document).encode())
    too_long = r"(?s)manifest for device device-111: .*payload is 5\d{4} characters; the service accepts at most 51200"
    with pytest.raises(InvalidInput, match=too_long):
        dep.deploy(_state(batch={**BATCH, "devices": BATCH["devices"][:1]}))


def test_overrides_over_the_payload_limit_are_refused(s3: Any) -> None:
    with pytest.raises(InvalidInput, match=r"camera overrides for device d1 is \d+ characters; .* at most 51200"):
        dep._payload({"nodeGraphOverrides": {"description": "x" * 60_000}}, "camera overrides", "d1")


def test_the_stored_template_of_the_application_stack_is_read(s3: Any) -> None:
    """The real writer's output (stacks/panorama_application.py), with the account CloudFormation substitutes."""
    from stacks.panorama_application import manifest_template

    body = manifest_template(SPEC).replace("${AWS::AccountId}", ACCOUNT)
    s3.put_object(Bucket=ARTIFACTS, Key=TEMPLATE_KEY, Body=body.encode())
    from lambda_handlers.artifacts import load_template

    template = load_template(s3, ARTIFACTS, TEMPLATE_KEY)
    assert template.spec == SPEC and template.account_id == ACCOUNT
    assert template.overrides == template_document(SPEC)["overrides"]


# --- check ------------------------------------------------------------------------------------------


def _deployed(deadline_in: int = 600, statuses: tuple[str, str] = ("IN_PROGRESS", "IN_PROGRESS")) -> dict[str, Any]:
    devices = []
    for (label, device_id, instance, replaced), status in zip(
        ((BY_ID, BY_ID, "ai-new-1", "ai-current"), (BY_NAME, NAME_ID, "ai-new-2", None)), statuses, strict=True
    ):
        devices.append(
            {
                "device": label,
                "device_id": device_id,
                "instance_id": instance,
                "replaced": replaced,
                "status": status,
                "status_description": "deployment requested",
            }
        )
    return {"status": "IN_PROGRESS", "deadline": int(time.time()) + deadline_in, "polls": 0, "devices": devices}


def _store_sent(s3: Any) -> None:
    for label, device_id in ((BY_ID, BY_ID), (BY_NAME, NAME_ID)):
        write_json(
            s3,
            ARTIFACTS,
            f"runs/{RUN}/deployment/{label}.json",
            {
                "run": RUN,
                "device": label,
                "device_id": device_id,
                "instance_name": SPEC.instance_name(label),
                "manifest": _graph(device_id),
                "overrides": OVERRIDES,
                "package": PACKAGE,
                "code_package": CODE_PACKAGE,
            },
        )


def _describe(stub: Stubber, instance_id: str, status: str, **extra: Any) -> None:
    if status == "DEPLOYMENT_SUCCEEDED":
        extra.setdefault("HealthStatus", "RUNNING")  # a deployed, healthy application, unless a test says
    stub.add_response(
        "describe_application_instance",
        _instance(instance_id, "app", status, **extra),
        {"ApplicationInstanceId": instance_id},
    )


def test_check_in_progress_then_succeeded_records_last_good(s3: Any, stub: Stubber, two_devices: StepSettings) -> None:
    _store_sent(s3)
    _describe(stub, "ai-new-1", "DEPLOYMENT_IN_PROGRESS")
    _describe(stub, "ai-new-2", "DEPLOYMENT_SUCCEEDED")
    _describe(stub, "ai-new-1", "DEPLOYMENT_SUCCEEDED")  # the second poll asks only about device 1

    first = dep.check_deployment(_state(deployment=_deployed()))
    assert first["deployment"]["status"] == "IN_PROGRESS" and first["deployment"]["polls"] == 1
    assert [d["status"] for d in first["deployment"]["devices"]] == ["IN_PROGRESS", "SUCCEEDED"]
    assert read_json(s3, ARTIFACTS, last_good_key(BY_ID)) is None
    second = dep.check_deployment(first)

    assert second["deployment"]["status"] == "SUCCEEDED" and second["deployment"]["polls"] == 2
    assert "failed_step" not in first and "failed_step" not in second
    good = read_json(s3, ARTIFACTS, last_good_key(BY_NAME))
    assert good == {
        "instance_id": "ai-new-2",
        "device_id": NAME_ID,
        "instance_name": SPEC.instance_name(BY_NAME),
        "manifest": _graph(NAME_ID),
        "overrides": OVERRIDES,
        "run": RUN,
        "package": PACKAGE,
        "code_package": CODE_PACKAGE,
    }
    assert read_json(s3, ARTIFACTS, last_good_key(BY_ID))["instance_id"] == "ai-new-1"


def test_a_deployed_application_counts_only_once_it_reports_running(
    s3: Any, stub: Stubber, two_devices: StepSettings
) -> None:
    """DEPLOYMENT_SUCCEEDED with HealthStatus NOT_AVAILABLE (not started yet) is still in progress."""
    _store_sent(s3)
    _describe(stub, "ai-new-1", "DEPLOYMENT_SUCCEEDED", HealthStatus="NOT_AVAILABLE")
    _describe(stub, "ai-new-2", "DEPLOYMENT_SUCCEEDED", HealthStatus="RUNNING")
    _describe(stub, "ai-new-1", "DEPLOYMENT_SUCCEEDED", HealthStatus="RUNNING")

    first = dep.check_deployment(_state(deployment=_deployed()))
    assert first["deployment"]["status"] == "IN_PROGRESS"
    waiting = first["deployment"]["devices"][0]
    assert (
        waiting["status"] == "IN_PROGRESS"
        and "waiting for HealthStatus RUNNING (now NOT_AVAILABLE)" in (waiting["status_description"])
    )
    assert read_json(s3, ARTIFACTS, last_good_key(BY_ID)) is None, "not good before it runs"
    assert dep.check_deployment(first)["deployment"]["status"] == "SUCCEEDED"
    assert read_json(s3, ARTIFACTS, last_good_key(BY_ID))["instance_id"] == "ai-new-1"


def test_a_crashing_application_is_a_failed_deployment_and_never_last_good(
    s3: Any, stub: Stubber, two_devices: StepSettings
) -> None:
    """Status alone says DEPLOYMENT_SUCCEEDED; HealthStatus ERROR says the application is not running."""
    _store_sent(s3)
    stopped = [
        {
            "DesiredState": "RUNNING",
            "DeviceReportedStatus": "STOPPED",
            "DeviceReportedTime": "2026-05-01T00:05:00Z",
            "RuntimeContextName": "code_node",
        }
    ]
    _describe(stub, "ai-new-1", "DEPLOYMENT_SUCCEEDED", HealthStatus="ERROR", RuntimeContextStates=stopped)
    _describe(stub, "ai-new-2", "DEPLOYMENT_SUCCEEDED")

    result = dep.check_deployment(_state(deployment=_deployed()))

    assert result["deployment"]["status"] == "FAILED" and result["failed_step"] == "CheckDeployment"
    crashed = result["deployment"]["devices"][0]
    assert crashed["status"] == "FAILED"
    assert crashed["status_description"] == (
        "DEPLOYMENT_SUCCEEDED; HealthStatus ERROR: the application is not running (device reported: code_node STOPPED)"
    )
    assert read_json(s3, ARTIFACTS, last_good_key(BY_ID)) is None
    assert read_json(s3, ARTIFACTS, last_good_key(BY_NAME)) is not None, "the healthy device is good"


def test_check_a_failed_deployment_is_a_status_with_the_reason(
    s3: Any, stub: Stubber, two_devices: StepSettings
) -> None:
    _store_sent(s3)
    _describe(
        stub,
        "ai-new-1",
        "DEPLOYMENT_FAILED",
        StatusDescription="Model compilation failed",
        RuntimeContextStates=[
            {
                "DesiredState": "RUNNING",
                "DeviceReportedStatus": "INSTALL_ERROR",
                "DeviceReportedTime": "2026-05-01T00:05:00Z",
                "RuntimeContextName": "model_node",
            }
        ],
    )
    _describe(stub, "ai-new-2", "DEPLOYMENT_SUCCEEDED")

    result = dep.check_deployment(_state(deployment=_deployed()))

    assert result["deployment"]["status"] == "FAILED"
    assert result["failed_step"] == "CheckDeployment", "the step that saw the devices fail (the run then rolls back)"
    failed = result["deployment"]["devices"][0]
    assert failed["status"] == "FAILED"
    assert failed["status_description"] == (
        "DEPLOYMENT_FAILED: Model compilation failed (device reported: model_node INSTALL_ERROR)"
    )
    assert read_json(s3, ARTIFACTS, last_good_key(BY_ID)) is None


def test_check_past_the_deadline_times_out_what_is_still_in_progress(
    s3: Any, stub: Stubber, two_devices: StepSettings
) -> None:
    _store_sent(s3)
    _describe(stub, "ai-new-2", "DEPLOYMENT_PENDING")

    result = dep.check_deployment(
        _state(deployment=_deployed(deadline_in=-1, statuses=("SUCCEEDED", "IN_PROGRESS"))), None
    )

    assert result["deployment"]["status"] == "TIMED_OUT" and result["failed_step"] == "CheckDeployment"
    assert [d["status"] for d in result["deployment"]["devices"]] == ["SUCCEEDED", "TIMED_OUT"]
    assert result["deployment"]["devices"][1]["status_description"] == "still DEPLOYMENT_PENDING after 900 s"


def test_check_an_instance_that_disappeared_failed(s3: Any, stub: Stubber, two_devices: StepSettings) -> None:
    stub.add_client_error(
        "describe_application_instance",
        "ResourceNotFoundException",
        "not found",
        404,
        modeled_fields={"Message": "not found", "ResourceId": "ai-new-2", "ResourceType": "application-instance"},
    )
    result = dep.check_deployment(_state(deployment=_deployed(statuses=("SUCCEEDED", "IN_PROGRESS"))))
    assert result["deployment"]["status"] == "FAILED" and result["failed_step"] == "CheckDeployment"
    assert result["deployment"]["devices"][1]["status_description"] == "application instance ai-new-2 no longer exists"


# --- rollback ---------------------------------------------------------------------------------------

GOOD: dict[str, Any] = {
    "instance_id": "ai-current",
    "device_id": BY_ID,
    "instance_name": SPEC.instance_name(BY_ID),
    "manifest": '{"nodeGraph": "of the earlier run"}',
    "overrides": OVERRIDES,
    "run": "ds-people-earlier000000",
    "package": {**PACKAGE, "patch_version": "b" * 64},
}


def _failed_deployment() -> dict[str, Any]:
    deployment = _deployed(statuses=("FAILED", "TIMED_OUT"))
    deployment["status"] = "TIMED_OUT"
    return deployment


def test_rollback_restores_the_last_good_deployment_and_skips_a_device_without_one(
    s3: Any, stub: Stubber, two_devices: StepSettings, pauses: list[float]
) -> None:
    write_json(s3, ARTIFACTS, last_good_key(BY_ID), GOOD)
    stub.add_response(
        "list_application_instances",
        {"ApplicationInstances": [_instance("ai-new-1", GOOD["instance_name"], "DEPLOYMENT_FAILED")]},
        {"DeviceId": BY_ID},
    )
    stub.add_response(
        "create_application_instance",
        {"ApplicationInstanceId": "ai-restored"},
        {
            "Name": GOOD["instance_name"],
            "Description": f"rollback of {RUN} to {GOOD['run']}",
            "DefaultRuntimeContextDevice": BY_ID,
            "ManifestPayload": {"PayloadData": GOOD["manifest"]},
            "ManifestOverridesPayload": {"PayloadData": GOOD["overrides"]},
            "RuntimeRoleArn": ROLE,
            "ApplicationInstanceIdToReplace": "ai-new-1",
            "Tags": {ROLLBACK_TAG: RUN, APP_TAG: "panopipe-dev"},
        },
    )

    result = rb.rollback(_state(deployment=_failed_deployment()))

    rollback = result["rollback"]
    assert rollback["status"] == "IN_PROGRESS" and rollback["polls"] == 0
    restored, skipped = rollback["devices"]
    assert restored == {
        "device": BY_ID,
        "device_id": BY_ID,
        "instance_id": "ai-restored",
        "replaced": "ai-new-1",
        "status": "IN_PROGRESS",
        "status_description": f"rollback to run {GOOD['run']} requested",
    }
    assert skipped["status"] == SKIPPED and skipped["status_description"] == rb.NO_EARLIER_GOOD
    assert skipped["instance_id"] is None and skipped["replaced"] is None, "nothing replaced, nothing claimed"
    assert read_json(s3, ARTIFACTS, f"runs/{RUN}/rollback/{BY_ID}.json") == {**GOOD, "rollback_of": RUN}
    assert pauses == [CREATE_INTERVAL_SECONDS], "other batches may have created a moment ago"


def test_rollback_without_any_earlier_good_deployment_is_reported_as_skipped(
    s3: Any, stub: Stubber, two_devices: StepSettings
) -> None:
    result = rb.rollback(_state(deployment=_failed_deployment()))
    assert result["rollback"]["status"] == SKIPPED, "nothing was restored: not a successful rollback"
    assert [d["status"] for d in result["rollback"]["devices"]] == [SKIPPED, SKIPPED]


def test_rollback_keeps_an_earlier_instance_that_still_runs(s3: Any, stub: Stubber, two_devices: StepSettings) -> None:
    write_json(s3, ARTIFACTS, last_good_key(BY_ID), GOOD)
    stub.add_response(
        "list_application_instances",
        {
            "ApplicationInstances": [
                _instance("ai-new-1", GOOD["instance_name"], "DEPLOYMENT_FAILED"),
                _instance("ai-current", GOOD["instance_name"], "DEPLOYMENT_SUCCEEDED"),
            ]
        },
        {"DeviceId": BY_ID},
    )
    deployment = _deployed(statuses=("FAILED", "SUCCEEDED"))
    result = rb.rollback(_state(deployment=deployment))
    (kept,) = result["rollback"]["devices"]
    assert result["rollback"]["status"] == "SUCCEEDED"
    assert kept["instance_id"] == "ai-current" and "still runs" in kept["status_description"]


def test_rollback_retried_adopts_its_instance(
    s3: Any, stub: Stubber, two_devices: StepSettings, pauses: list[float]
) -> None:
    write_json(s3, ARTIFACTS, last_good_key(BY_ID), GOOD)
    stub.add_response(
        "list_application_instances",
        {
            "ApplicationInstances": [
                _instance("ai-new-1", GOOD["instance_name"], "DEPLOYMENT_FAILED"),
                _instance("ai-restored", GOOD["instance_name"], "DEPLOYMENT_REQUESTED", Tags={ROLLBACK_TAG: RUN}),
            ]
        },
        {"DeviceId": BY_ID},
    )
    result = rb.rollback(_state(deployment=_deployed(statuses=("FAILED", "SUCCEEDED"))))
    assert result["rollback"]["devices"][0]["instance_id"] == "ai-restored"
    assert result["rollback"]["status"] == "IN_PROGRESS"


def test_check_rollback_polls_the_rollback_and_leaves_last_good_alone(
    s3: Any, stub: Stubber, two_devices: StepSettings
) -> None:
    write_json(s3, ARTIFACTS, last_good_key(BY_ID), GOOD)
    rollback: dict[str, Any] = {
        "status": "IN_PROGRESS",
        "deadline": int(time.time()) + 600,
        "polls": 0,
        "devices": [
            {
                "device": BY_ID,
                "device_id": BY_ID,
                "instance_id": "ai-restored",
                "replaced": "ai-new-1",
                "status": "IN_PROGRESS",
                "status_description": "rollback requested",
            },
            {
                "device": BY_NAME,
                "device_id": NAME_ID,
                "instance_id": None,
                "replaced": "ai-new-2",
                "status": SKIPPED,
                "status_description": rb.NO_EARLIER_GOOD,
            },
        ],
    }
    _describe(stub, "ai-restored", "DEPLOYMENT_SUCCEEDED")

    state = _state(deployment=_failed_deployment(), rollback=rollback)

    result = rb.check_rollback(state)

    assert result["rollback"]["status"] == "SUCCEEDED" and result["rollback"]["polls"] == 1
    assert result["rollback"]["devices"][1] == rollback["devices"][1], "a skipped device is not polled"
    assert result["deployment"] == state["deployment"]
    assert read_json(s3, ARTIFACTS, last_good_key(BY_ID)) == GOOD
    assert read_json(s3, ARTIFACTS, last_good_key(BY_NAME)) is None
