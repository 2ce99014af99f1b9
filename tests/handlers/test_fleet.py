"""Fleets: devices by id, name and tag group (ListDevices, paged), batches, and the batches' results gathered."""

from __future__ import annotations

import datetime
import json
from typing import Any

import pytest
from botocore.stub import Stubber

from lambda_handlers import fleet
from lambda_handlers.app_instances import CREATE_INTERVAL_SECONDS
from lambda_handlers.errors import InvalidInput
from lambda_handlers.settings import StepSettings, install
from tests.handlers.conftest import make_settings

RUN = {"name": "run-fleet", "started": "2026-12-01T10:00:00.000Z"}


def _device(index: int, **tags: str) -> dict[str, Any]:
    return {"DeviceId": f"device-{index:03d}", "Name": f"cam-{index:03d}", "Tags": tags}


def _pages(stub: Stubber, devices: list[dict[str, Any]], size: int = 25) -> None:
    """ListDevices as the service answers: at most 25 per page, then a NextToken."""
    for start in range(0, len(devices), size):
        params = {"NextToken": f"t{start}"} if start else {}
        page: dict[str, Any] = {"Devices": devices[start : start + size]}
        if start + size < len(devices):
            page["NextToken"] = f"t{start + size}"
        stub.add_response("list_devices", page, params)


def _configure(settings: StepSettings, devices: list[dict[str, Any]], batch: int = 20) -> None:
    install(make_settings({"devices": devices, "runs.deploy_batch_size": batch}))


def test_ids_names_and_a_tag_group_resolve_through_every_page_once_each(settings: StepSettings, stub: Stubber) -> None:
    listed = [_device(i, fleet="stores" if i % 2 else "lab") for i in range(60)]
    listed.append({**_device(60, fleet="stores"), "Name": "cam-001"})  # a second cam-001: labelled by id
    _pages(stub, listed)
    _configure(settings, [{"id": "device-900"}, {"name": "cam-002"}, {"tags": {"fleet": "stores"}}], batch=8)

    planned = fleet.plan_deployment({"run": RUN})["fleet"]

    devices = [d for batch in planned["batches"] for d in batch["devices"]]
    labels = [d["device"] for d in devices]
    assert labels[:2] == ["device-900", "cam-002"]
    assert len(devices) == 2 + 31 and len(set(d["device_id"] for d in devices)) == len(devices)
    assert "device-001" in labels and "device-060" in labels, "two devices named cam-001: each by its id"
    assert "cam-003" in labels and "cam-004" not in labels, "only the tag group's devices"
    assert planned["devices"] == 33 and planned["batch_size"] == 8
    assert [len(b["devices"]) for b in planned["batches"]] == [8, 8, 8, 8, 1]


def test_batches_are_staggered_so_creates_keep_to_one_per_second(settings: StepSettings) -> None:
    _configure(settings, [{"id": f"device-{i}"} for i in range(45)], batch=20)
    before = datetime.datetime.now(datetime.UTC).timestamp()
    batches = fleet.plan_deployment({"run": RUN})["fleet"]["batches"]
    starts = [datetime.datetime.fromisoformat(b["start_at"].replace("Z", "+00:00")).timestamp() for b in batches]
    assert [b["index"] for b in batches] == [0, 1, 2]
    assert starts[0] == pytest.approx(before, abs=2)
    gap = 20 * CREATE_INTERVAL_SECONDS * fleet.STAGGER
    assert starts[1] - starts[0] == pytest.approx(gap, abs=0.01) and starts[2] - starts[1] == pytest.approx(
        gap, abs=0.01
    )


def test_a_tag_group_matching_nothing_or_an_unknown_name_is_refused_before_anything_is_created(
    settings: StepSettings, stub: Stubber
) -> None:
    _pages(stub, [_device(1, fleet="lab")])
    _configure(settings, [{"name": "lobby"}, {"tags": {"fleet": "stores"}}])
    with pytest.raises(InvalidInput) as refused:
        fleet.plan_deployment({"run": RUN})
    assert "no appliance named 'lobby' (ListDevices finds: cam-001)" in str(refused.value)
    assert "no appliance carries the tags of tags:fleet=stores (ListDevices: 1 devices)" in str(refused.value)


def test_more_devices_than_the_state_can_hold_are_refused_with_the_way_out(
    settings: StepSettings, stub: Stubber
) -> None:
    _pages(stub, [_device(i, fleet="all") for i in range(300)])
    _configure(settings, [{"tags": {"fleet": "all"}}])
    with pytest.raises(
        InvalidInput, match=r"resolve to 300 appliances: their records could take \d+ KiB .*split the fleet"
    ):
        fleet.plan_deployment({"run": RUN})


def test_the_worst_case_of_a_fleet_the_plan_accepts_fits_the_state_limit() -> None:
    """200 devices with 30-character ids, all failed with the longest description and rolled back."""
    devices = {f"device-{i:023d}": f"device-{i:023d}" for i in range(200)}
    assert fleet.worst_case_bytes(devices) <= fleet.STATE_LIMIT_BYTES - fleet.REST_OF_STATE_BYTES
    worst = _record("x", "TIMED_OUT") | {"status_description": "d" * 200, "instance_id": "i" * 46, "replaced": "i" * 46}
    records = [{**worst, "device": label, "device_id": label} for label in devices]
    batches = [
        {
            "index": 0,
            "start_at": "2026-12-01T10:00:00.000Z",
            "devices": [{"device": d, "device_id": d} for d in devices],
        }
    ]
    at_map_end = {"fleet": {"batches": batches, "results": [{"deployment": records, "rollback": records}]}}
    assert len(json.dumps(at_map_end)) + fleet.REST_OF_STATE_BYTES < fleet.STATE_LIMIT_BYTES


def _record(device: str, status: str) -> dict[str, Any]:
    return {
        "device": device,
        "device_id": f"id-{device}",
        "instance_id": f"ai-{device}",
        "replaced": None,
        "status": status,
        "status_description": status.lower(),
    }


def test_finish_gathers_every_batch_and_counts_each_outcome(settings: StepSettings) -> None:
    results = [
        {"deployment": [_record("a", "SUCCEEDED"), _record("b", "SUCCEEDED")]},
        {
            "deployment": [_record("c", "FAILED"), _record("d", "SUCCEEDED"), _record("e", "TIMED_OUT")],
            "rollback": [_record("c", "SUCCEEDED"), _record("e", "SKIPPED")],
        },
    ]
    state: Any = {"run": RUN, "fleet": {"devices": 5, "batch_size": 3, "batches": [], "results": results}}

    finished = fleet.finish_deployment(state)

    assert [d["device"] for d in finished["deployment"]["devices"]] == ["a", "b", "c", "d", "e"]
    assert finished["deployment"]["status"] == "TIMED_OUT" and finished["failed_step"] == "CheckDeployment"
    assert finished["rollback"]["status"] == "SUCCEEDED"
    assert "results" not in finished["fleet"]
    assert finished["fleet"]["counts"] == {
        "devices": 5,
        "succeeded": 3,
        "failed": 1,
        "timed_out": 1,
        "rolled_back": 1,
        "rollback_failed": 0,
        "rollback_skipped": 1,
    }


def test_finish_of_a_fleet_deployed_everywhere_has_no_rollback_and_no_failed_step(settings: StepSettings) -> None:
    state: Any = {"run": RUN, "fleet": {"results": [{"deployment": [_record("a", "SUCCEEDED")]}]}}
    finished = fleet.finish_deployment(state)
    assert finished["deployment"]["status"] == "SUCCEEDED"
    assert "rollback" not in finished and "failed_step" not in finished
