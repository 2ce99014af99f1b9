"""Many runs, many devices, through the state machine (the in-process interpreter): the lock and the fleet Map."""

from __future__ import annotations

import json
import types
from typing import Any

import pytest
from botocore.stub import ANY

from lambda_handlers import deployment_lock
from lambda_handlers import settings as cfg
from lambda_handlers.app_instances import APP_TAG, ROLLBACK_TAG, RUN_TAG
from lambda_handlers.artifacts import last_good_key, read_json, write_json
from lambda_handlers.deployment_lock import LOCK_KEY
from panopipe.config import load_config
from panopipe.config.step_settings import step_settings_json
from tests.conftest import ROOT
from tests.handlers.interpreter import Function
from tests.handlers.test_pipeline_runs import (
    ARTIFACTS,
    MODEL_URI,
    RUN,
    State,
    World,
    failed_at,
    instance,
)
from tests.handlers.test_pipeline_runs import machine as machine  # the fixtures
from tests.handlers.test_pipeline_runs import panorama_client as panorama_client
from tests.handlers.test_pipeline_runs import world as world

__all__ = ["machine", "panorama_client", "world"]


def configure(world: World, overrides: dict[str, Any]) -> None:
    """Every function of the run gets the dev config with ``overrides`` (as a deploy of that config would)."""
    config = load_config(ROOT / "config/dev.yaml", base_dir=ROOT, overrides={"runs.poll_seconds": 1, **overrides})
    text = step_settings_json(config)
    world.interpreter.functions = {  # a copy: the module's machine is shared by every test
        key: Function(function.handler, {**function.environment, cfg.STEP_SETTINGS: text})
        for key, function in world.interpreter.functions.items()
    }


def lock_record(world: World) -> dict[str, Any]:
    return read_json(world.s3, ARTIFACTS, LOCK_KEY)  # type: ignore[no-any-return]


def virtual_clock(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """The lock's lease runs on the interpreter's clock, like the loops' deadlines."""
    monkeypatch.setattr(deployment_lock, "time", types.SimpleNamespace(time=world.interpreter.now))


def to_compilation(world: World) -> None:
    world.stub_code_package()
    world.put_model()
    world.compile(0)


# --- the lock ------------------------------------------------------------------------------------------


def test_a_run_older_than_what_was_deployed_is_superseded_and_deploys_nothing(world: World) -> None:
    newer = {"run": "ds-people-newer", "time": "2026-06-02T00:00:00.000Z", "id": "datasets/people-2/"}
    write_json(world.s3, ARTIFACTS, LOCK_KEY, {"holder": None, "expires": 0, "deployed": newer})
    to_compilation(world)

    run = world.run({"model": MODEL_URI})  # a model run: its data is its start, 2026-06-01T10:00:00Z

    assert run.status == "SUCCEEDED", run.cause
    assert run.path[-4:] == ["AcquireLock", "Lock still in progress?", "Notify superseded", "Superseded"]
    assert world.requests("RegisterPackageVersion") == [] and world.requests("CreateApplicationInstance") == []
    summary = run.output["summary"]
    assert summary["status"] == "SUPERSEDED" and "deployed by run ds-people-newer" in summary["reason"]
    (message,) = world.messages()
    assert message["Subject"] == f"[panopipe-dev] run {RUN} SUPERSEDED"
    assert lock_record(world)["deployed"] == newer and lock_record(world)["holder"] is None


def test_a_run_waits_while_another_deploys_then_takes_the_lock_and_records_what_it_deployed(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    virtual_clock(world, monkeypatch)
    write_json(world.s3, ARTIFACTS, LOCK_KEY, {"holder": "other-run", "expires": 2e9, "deployed": None})

    def other_run_finishes(data: State) -> None:
        if data["lock"]["polls"] == 2:
            write_json(world.s3, ARTIFACTS, LOCK_KEY, {"holder": None, "expires": 0, "deployed": None})

    world.hooks["CheckLock"] = other_run_finishes
    to_compilation(world)
    world.stub_registration(0)
    world.stub_deployment(0)

    run = world.run({"model": MODEL_URI})

    assert run.status == "SUCCEEDED", run.cause
    assert run.waits["Wait for lock"] == 3 and run.invocations["CheckLock"] == 3
    start = run.path.index("AcquireLock")
    assert run.path[start : start + 5] == ["AcquireLock", "Lock still in progress?", "Wait for lock", "CheckLock", ANY]
    record = lock_record(world)
    assert record["holder"] is None and record["deployed"]["run"] == RUN


def test_a_run_that_waits_too_long_fails_naming_the_holder(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    virtual_clock(world, monkeypatch)
    configure(world, {"runs.lock_wait_seconds": 60})
    write_json(world.s3, ARTIFACTS, LOCK_KEY, {"holder": "stuck-run", "expires": 4e9, "acquired": 1.7e9})
    to_compilation(world)

    run = world.run({"model": MODEL_URI})

    assert (run.status, run.error) == ("FAILED", "LockWaitTimedOut")
    assert run.cause is not None and run.cause.startswith(
        "waited 60 s (runs.lock_wait_seconds) for the deployment lock"
    )
    assert "run stuck-run holds it since" in run.cause
    assert run.path[-5:] == failed_at("CheckLock")
    assert lock_record(world)["holder"] == "stuck-run", "the release frees only a lock the run holds"


def test_a_crashed_runs_lock_is_taken_over_once_its_lease_expires(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    virtual_clock(world, monkeypatch)
    lease = world.machine.settings.runs.lock_lease_seconds
    expires = world.interpreter.now() + 60  # the crashed run's last renewal was almost a lease ago
    write_json(world.s3, ARTIFACTS, LOCK_KEY, {"holder": "crashed-run", "expires": expires, "deployed": None})
    to_compilation(world)
    world.stub_registration(0)
    world.stub_deployment(0)

    run = world.run({"model": MODEL_URI})

    assert run.status == "SUCCEEDED", run.cause
    poll = world.machine.definition["States"]["Wait for lock"]["Seconds"]
    waited = run.waits["Wait for lock"] * poll
    assert 30 <= waited <= 60 + poll < lease, "waited until the lease ran out (real seconds pass too), no longer"
    assert lock_record(world)["deployed"]["run"] == RUN


# --- the fleet -----------------------------------------------------------------------------------------

FLEET = ["device-a", "device-b", "device-c", "device-d", "device-e"]


def _deploy(world: World, device: str, created: str) -> None:
    world.add("list_application_instances", {"ApplicationInstances": []}, {"DeviceId": device})
    params = {
        "Name": world.spec.instance_name(device),
        "Description": ANY,
        "DefaultRuntimeContextDevice": device,
        "ManifestPayload": ANY,
        "ManifestOverridesPayload": ANY,
        "RuntimeRoleArn": ANY,
        "Tags": {RUN_TAG: RUN, APP_TAG: "panopipe-dev"},
    }
    world.add("create_application_instance", {"ApplicationInstanceId": created}, params)


def _batch(world: World, *devices: str, polled: tuple[str, ...] = ()) -> None:
    """A batch's creates (device ``d`` gets instance ``ai-d``), then one DescribeApplicationInstance
    each: ``polled`` statuses in device order (default all DEPLOYMENT_SUCCEEDED)."""
    for device in devices:
        _deploy(world, f"device-{device}", f"ai-{device}")
    for device, status in zip(devices, polled or ("DEPLOYMENT_SUCCEEDED",) * len(devices), strict=True):
        _describe(world, f"ai-{device}", f"device-{device}", status)


def _describe(world: World, instance_id: str, device: str, status: str, **extra: Any) -> None:
    described = instance(instance_id, world.spec.instance_name(device), status, **extra)
    world.add("describe_application_instance", described, {"ApplicationInstanceId": instance_id})


def test_one_failing_device_among_many_is_rolled_back_alone(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """Five devices in batches of two: device-c fails; only it is rolled back, the other four keep the new version."""
    configure(world, {"devices": [{"id": d} for d in FLEET], "runs.deploy_batch_size": 2})
    name = world.spec.instance_name("device-c")
    earlier = {
        "instance_id": "ai-c-good",
        "device_id": "device-c",
        "instance_name": name,
        "manifest": json.dumps({"nodeGraph": {}}),
        "overrides": "{}",
        "run": "ds-people-earlier",
        "package": {},
    }
    write_json(world.s3, ARTIFACTS, last_good_key("device-c"), earlier)
    to_compilation(world)
    world.stub_registration(0)
    _batch(world, "a", "b")  # batch 0: a, b deploy
    # batch 1: c fails, d deploys; c alone is rolled back to its earlier deployment
    _deploy(world, "device-c", "ai-c")
    _deploy(world, "device-d", "ai-d")
    _describe(world, "ai-c", "device-c", "DEPLOYMENT_FAILED", StatusDescription="camera stream unreachable")
    _describe(world, "ai-d", "device-d", "DEPLOYMENT_SUCCEEDED")
    failed = instance("ai-c", name, "DEPLOYMENT_FAILED", Tags={RUN_TAG: RUN})
    world.add("list_application_instances", {"ApplicationInstances": [failed]}, {"DeviceId": "device-c"})
    rollback = {
        "Name": name,
        "Description": f"rollback of {RUN} to ds-people-earlier",
        "DefaultRuntimeContextDevice": "device-c",
        "ManifestPayload": {"PayloadData": earlier["manifest"]},
        "ManifestOverridesPayload": {"PayloadData": "{}"},
        "RuntimeRoleArn": ANY,
        "ApplicationInstanceIdToReplace": "ai-c",
        "Tags": {ROLLBACK_TAG: RUN, APP_TAG: "panopipe-dev"},
    }
    world.add("create_application_instance", {"ApplicationInstanceId": "ai-c-back"}, rollback)
    _describe(world, "ai-c-back", "device-c", "DEPLOYMENT_SUCCEEDED")
    _batch(world, "e")  # batch 2: e deploys

    run = world.run({"model": MODEL_URI})

    assert (run.status, run.error) == ("FAILED", "DeploymentFailed")
    assert run.cause == (
        "deployment FAILED on 1 of 5 devices (4 succeeded; 1 rolled back): device-c: FAILED - "
        "DEPLOYMENT_FAILED: camera stream unreachable"
    )
    assert run.path.count("Wait for the batch's turn") == 3 and run.invocations["Deploy"] == 3
    assert run.invocations["Rollback"] == 1 and run.path.count("Batch rolled back") == 1
    output = run.output
    assert [(d["device"], d["status"]) for d in output["deployment"]["devices"]] == [
        ("device-a", "SUCCEEDED"),
        ("device-b", "SUCCEEDED"),
        ("device-c", "FAILED"),
        ("device-d", "SUCCEEDED"),
        ("device-e", "SUCCEEDED"),
    ]
    assert [(d["device"], d["instance_id"]) for d in output["rollback"]["devices"]] == [("device-c", "ai-c-back")]
    assert output["fleet"]["counts"]["succeeded"] == 4 and output["fleet"]["counts"]["rolled_back"] == 1
    for device in ("device-a", "device-b", "device-d", "device-e"):
        assert read_json(world.s3, ARTIFACTS, last_good_key(device))["run"] == RUN, device
    assert read_json(world.s3, ARTIFACTS, last_good_key("device-c")) == earlier
    assert lock_record(world)["holder"] is None and lock_record(world)["deployed"]["run"] == RUN
    (message,) = world.messages()
    assert "Devices: devices 5, succeeded 4, failed 1, timed out 0, rolled back 1" in message["Message"]


def test_a_fleet_deployed_everywhere_polls_each_batch_on_its_own(world: World) -> None:
    configure(world, {"devices": [{"id": d} for d in FLEET[:3]], "runs.deploy_batch_size": 2})
    to_compilation(world)
    world.stub_registration(0)
    _batch(world, "a", "b", polled=("DEPLOYMENT_IN_PROGRESS", "DEPLOYMENT_SUCCEEDED"))
    _describe(world, "ai-a", "device-a", "DEPLOYMENT_SUCCEEDED")  # device-b is not asked again
    _batch(world, "c")

    run = world.run({"model": MODEL_URI})

    assert run.status == "SUCCEEDED", run.cause
    assert run.invocations["CheckDeployment"] == 3 and run.waits["Wait for deployment"] == 1
    assert run.output["fleet"]["counts"] == {
        "devices": 3,
        "succeeded": 3,
        "failed": 0,
        "timed_out": 0,
        "rolled_back": 0,
        "rollback_failed": 0,
        "rollback_skipped": 0,
    }
    assert run.path[-4:] == ["Deployed everywhere?", "ReleaseLock", "Notify success", "Deployed"]


def test_a_run_whose_lease_was_taken_over_stops_before_deploying_and_frees_nothing(world: World) -> None:
    """LockLost in the batch's Deploy ends that batch; the release on the failure path leaves the new holder's lock."""

    def taken_over(data: State) -> None:
        write_json(world.s3, ARTIFACTS, LOCK_KEY, {"holder": "newer-run", "expires": 4e9, "deployed": None})

    world.hooks["Deploy"] = taken_over
    to_compilation(world)
    world.stub_registration(0)
    world.add("list_devices", {"Devices": [{"DeviceId": "device-4f1b2c3d", "Name": "local-device-1"}]}, {})

    run = world.run({"model": MODEL_URI})

    assert (run.status, run.error) == ("FAILED", "DeploymentFailed")
    assert run.cause is not None and "the batch's step failed: LockLost: the deployment lock is held by newer-run" in (
        run.cause
    )
    assert run.path[run.path.index("Deploy") :] == [
        "Deploy",
        "Batch not deployed",
        "FinishDeployment",
        "Deployed everywhere?",
        "Release lock of a failed run",
        "Notify failure",
        "Run failed",
    ]
    assert world.requests("CreateApplicationInstance") == []
    assert lock_record(world)["holder"] == "newer-run"


def test_a_batch_whose_step_fails_for_good_ends_alone_and_the_others_deploy(world: World) -> None:
    """Batch 0's CheckDeployment meets an error no retry helps: its devices are FAILED with it; batch 1 deploys."""
    configure(world, {"devices": [{"id": d} for d in FLEET[:3]], "runs.deploy_batch_size": 2})
    to_compilation(world)
    world.stub_registration(0)
    _deploy(world, "device-a", "ai-a")
    _deploy(world, "device-b", "ai-b")
    world.stub.add_client_error("describe_application_instance", "AccessDeniedException", "not allowed", 403)
    _batch(world, "c")

    run = world.run({"model": MODEL_URI})

    assert (run.status, run.error) == ("FAILED", "DeploymentFailed")
    assert "Batch failed" in run.path and run.path.count("Batch deployed") == 1
    devices = {d["device"]: (d["status"], d["status_description"]) for d in run.output["deployment"]["devices"]}
    failed = "the batch's step failed: AccessDeniedException: "
    assert devices["device-a"][0] == devices["device-b"][0] == "FAILED"
    assert devices["device-a"][1].startswith(failed) and "not allowed" in devices["device-a"][1]
    assert devices["device-c"] == ("SUCCEEDED", ANY)
    assert run.output["fleet"]["counts"]["succeeded"] == 1 and "batches" not in run.output["fleet"]
