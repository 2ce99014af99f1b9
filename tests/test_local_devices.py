"""Local Panorama devices: specs with tags, numbered fleets, `panopipe local up --devices N`, and the
devices that simulate a healthy appliance instead of running the application (offline, no emulator process).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from local_aws.appliance import Appliance, ApplianceSettings, Deployment
from local_aws.appliance.graph import plan
from local_aws.appliance.outputs import summary, wait_for_outputs
from local_aws.appliance.runner import DEFAULT_APPLIANCE_DEVICES, SIMULATED
from local_aws.emulator import _parser, appliance_devices, device_specs
from local_aws.panorama_backend import PanoramaBackend
from local_aws.panorama_devices import (
    MAX_LOCAL_DEVICES,
    device_records,
    device_spec,
    numbered_devices,
    parse_device,
    parse_numbered,
)
from local_aws.panorama_records import device_id_for_name
from panopipe import exit_codes, local_mode
from panopipe.cli import app
from panopipe.config import EnvironmentConfig, load_config
from panopipe.config.panorama_spec import application_spec
from panopipe.config.schema import DeviceConfig
from panorama_app.manifest import documents
from tests.conftest import ROOT

DEV = ROOT / "config" / "dev.yaml"
CONFIG = load_config(DEV, base_dir=ROOT)
cli = CliRunner()


def _with_devices(*devices: dict[str, Any]) -> EnvironmentConfig:
    return CONFIG.model_copy(update={"devices": tuple(DeviceConfig.model_validate(d) for d in devices)})


# --- device specs ----------------------------------------------------------------------------------


def test_a_device_spec_is_a_name_or_an_id_then_its_tags() -> None:
    lobby = parse_device("lobby,site=paris,floor=3")
    assert (lobby.device_id, lobby.name, dict(lobby.tags)) == (
        device_id_for_name("lobby"),
        "lobby",
        {"site": "paris", "floor": "3"},
    )
    by_id = parse_device("id:device-x,empty=")
    assert (by_id.device_id, by_id.name, dict(by_id.tags)) == ("device-x", "device-x", {"empty": ""})
    assert dict(parse_device(" lobby ").tags) == {}


def test_tag_keys_and_values_keep_commas_equals_and_percents() -> None:
    tags = {"site": "Paris, 3rd floor", "rule": "a=b", "share": "50%", "%2C": "literal"}
    spec = device_spec("lobby", tags)
    assert spec == "lobby,site=Paris%2C 3rd floor,rule=a%3Db,share=50%25,%252C=literal"
    assert dict(parse_device(spec).tags) == tags
    assert device_spec("id:device-x") == "id:device-x"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "a device is NAME[,key=value...] or id:<device id>"),
        ("id:", "a device is NAME"),
        ("bad name", "its name or id 1-255 letters, digits, - and _"),
        ("x" * 256, "1-255"),
        ("lobby,site", "a tag is key=value with a key"),
        ("lobby,=paris", "a tag is key=value with a key"),
        ("lobby,", "a tag is key=value"),
        ("lobby," + "k" * 129 + "=v", "keys 1-128 characters, values 0-256"),
        ("lobby,k=" + "v" * 257, "keys 1-128 characters, values 0-256"),
        ("lobby,site=a,site=b", "tag 'site' is given twice"),
        ("lobby," + ",".join(f"k{i}=v" for i in range(51)), "51 tags, at most 50"),
    ],
)
def test_a_spec_that_is_no_device_is_refused(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_device(spec)


def test_the_longest_tags_are_accepted() -> None:
    spec = "lobby," + ",".join(f"{i:0128d}={'v' * 256}" for i in range(50))
    assert len(parse_device(spec).tags) == 50


def test_a_device_given_twice_carries_the_tags_of_both_unless_they_disagree() -> None:
    records = device_records(["lobby,site=paris", "id:device-x", "lobby,floor=3", "lobby,site=paris"])
    assert [(r.name, r.tags) for r in records.values()] == [
        ("lobby", {"site": "paris", "floor": "3"}),
        ("device-x", {}),
    ]
    with pytest.raises(ValueError, match="lobby is given twice with different values of tag"):
        device_records(["lobby,site=paris", "lobby,site=lyon"])


def test_a_numbered_fleet_is_local_device_1_to_n_with_its_tags() -> None:
    assert numbered_devices(3, {"site": "a,b"}) == [
        "local-device-1,site=a%2Cb",
        "local-device-2,site=a%2Cb",
        "local-device-3,site=a%2Cb",
    ]
    assert parse_numbered("2") == ["local-device-1", "local-device-2"]
    assert parse_numbered("2,site=x") == ["local-device-1,site=x", "local-device-2,site=x"]
    assert len(parse_numbered(str(MAX_LOCAL_DEVICES))) == MAX_LOCAL_DEVICES
    for bad, message in (("0", "give 1 to 1000"), ("1001", "give 1 to 1000"), ("x", "N a number"), ("", "N a number")):
        with pytest.raises(ValueError, match=message):
            parse_numbered(bad)


def test_the_backend_reports_the_tags() -> None:
    backend = PanoramaBackend(devices=["lobby,site=paris", "id:device-x"])
    listed = {d["Name"]: d["Tags"] for d in backend.list_devices()}
    assert listed == {"lobby": {"site": "paris"}, "device-x": {}}
    assert backend.describe_device(device_id_for_name("lobby"))["Tags"] == {"site": "paris"}


# --- the emulator's command line -------------------------------------------------------------------


def test_the_emulator_takes_tagged_devices_and_a_numbered_fleet() -> None:
    args = _parser().parse_args(
        ["--panorama-device", "lobby,site=paris", "--panorama-device", "id:device-x", "--panorama-devices", "3,site=a"]
    )
    specs = device_specs(args.panorama_device, args.panorama_devices)
    assert specs == [
        "lobby,site=paris",
        "id:device-x",
        "local-device-1,site=a",
        "local-device-2,site=a",
        "local-device-3,site=a",
    ]
    assert args.appliance_devices == DEFAULT_APPLIANCE_DEVICES == 8
    assert appliance_devices(specs, 3) == {"lobby", "device-x", "local-device-1"}
    assert appliance_devices(numbered_devices(200), DEFAULT_APPLIANCE_DEVICES) == {
        f"local-device-{i}" for i in range(1, 9)
    }
    empty = _parser().parse_args([])
    assert device_specs(empty.panorama_device, empty.panorama_devices) == ["local-device-1"]


@pytest.mark.parametrize(
    "args",
    [
        ["--panorama-device", "bad name"],
        ["--panorama-device", "lobby,site"],
        ["--panorama-devices", "0"],
        ["--panorama-devices", "1001"],
        ["--appliance-devices", "0"],
    ],
)
def test_the_emulator_refuses_bad_devices_as_usage_errors(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        _parser().parse_args(args)
    assert info.value.code == 2
    assert "error: argument" in capsys.readouterr().err


# --- panopipe local up: the specs it passes -------------------------------------------------------


def test_without_tag_groups_the_configs_devices_are_the_local_devices() -> None:
    assert local_mode.panorama_devices(CONFIG) == ["local-device-1"]  # dev.yaml: what `make local` starts
    config = _with_devices({"name": "lobby"}, {"id": "device-x"})
    assert local_mode.panorama_devices(config) == ["lobby", "id:device-x"]
    assert local_mode.panorama_devices(config, 2) == ["lobby", "id:device-x", "local-device-1", "local-device-2"]


def test_each_tag_group_gets_a_device_by_default() -> None:
    config = _with_devices({"tags": {"site": "paris"}}, {"name": "lobby"}, {"tags": {"site": "lyon", "floor": "3"}})
    specs = local_mode.panorama_devices(config)
    assert specs == ["lobby", "local-device-1,site=paris", "local-device-2,site=lyon,floor=3"]
    assert local_mode.panorama_devices(_with_devices({"tags": {"site": "paris"}})) == ["local-device-1,site=paris"]


def test_devices_n_tags_n_devices_with_every_group_besides_the_named_ones() -> None:
    config = _with_devices(
        {"name": "lobby"},
        {"tags": {"site": "paris, 3rd"}},
        {"name": "local-device-2"},
        {"tags": {"fleet": "a=b", "site": "paris, 3rd"}},
    )
    specs = local_mode.panorama_devices(config, 200)
    tags = "site=paris%2C 3rd,fleet=a%3Db"
    assert specs[:3] == ["lobby", f"local-device-2,{tags}", f"local-device-1,{tags}"]  # named first, no duplicate
    assert specs[-1] == f"local-device-200,{tags}" and len(specs) == 201
    records = device_records(specs)
    assert len(records) == 201
    tagged = [r.name for r in records.values() if r.tags == {"site": "paris, 3rd", "fleet": "a=b"}]
    assert len(tagged) == 200 and "lobby" not in tagged
    assert appliance_devices(specs, DEFAULT_APPLIANCE_DEVICES) == {"lobby", *(f"local-device-{i}" for i in range(1, 8))}
    line = local_mode.describe_devices(specs)
    assert line.startswith(
        "201 devices (lobby, local-device-2 … local-device-200; 200 tagged fleet=a=b,site=paris, 3rd)"
    )
    assert line.endswith(": the first 8 run the deployed application, the other 193 simulate a healthy device")
    assert local_mode.describe_devices(["lobby"]) == "1 device (lobby)"


def test_tag_groups_that_disagree_cannot_tag_one_fleet() -> None:
    config = _with_devices({"tags": {"site": "paris"}}, {"tags": {"site": "lyon"}})
    assert local_mode.panorama_devices(config) == ["local-device-1,site=paris", "local-device-2,site=lyon"]
    with pytest.raises(local_mode.LocalModeError, match="give tag 'site' two values") as info:
        local_mode.panorama_devices(config, 3)
    assert info.value.exit_code == exit_codes.USAGE


@pytest.mark.parametrize("count", [0, -1, 1001])
def test_a_device_count_out_of_range_is_a_usage_error(count: int) -> None:
    with pytest.raises(local_mode.LocalModeError, match="give 1 to 1000 local devices") as info:
        local_mode.panorama_devices(CONFIG, count)
    assert info.value.exit_code == exit_codes.USAGE


# --- the command line ------------------------------------------------------------------------------


def test_local_up_help_describes_devices() -> None:
    result = cli.invoke(app, ["local", "up", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())
    assert "--devices N register N local devices (1 to 1000), local-device-1 … local-device-N" in text
    assert f"the first {DEFAULT_APPLIANCE_DEVICES} devices run the deployed application" in text
    assert f"(1 to {MAX_LOCAL_DEVICES})" in text and "(default: one device per tag group)" in text


@pytest.mark.parametrize("count", ["0", "-3", "1001"])
def test_local_up_refuses_a_device_count_out_of_range(count: str) -> None:
    result = cli.invoke(app, ["local", "up", "--devices", count, "-c", str(DEV)])
    assert result.exit_code == exit_codes.USAGE, result.output
    assert result.stderr.strip().splitlines() == [f"error: --devices {count}: give 1 to 1000 local devices"]


def test_local_up_passes_the_device_count(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int | None] = []

    def up(*_: object, devices: int | None = None, **__: object) -> None:
        seen.append(devices)
        raise local_mode.LocalModeError("stop here")

    monkeypatch.setattr(local_mode, "up", up)
    for args, expected in ((["--devices", "200"], 200), ([], None)):
        result = cli.invoke(app, ["local", "up", "-c", str(DEV), *args])
        assert result.exit_code == exit_codes.AWS and "error: stop here" in result.stderr
        assert seen.pop() == expected


def test_local_up_refuses_tag_groups_that_disagree(tmp_path: Path) -> None:
    if not local_mode.CDK.exists():
        pytest.skip("the pinned CDK CLI is not installed (make local installs it)")
    config = tmp_path / "config.yaml"
    text = DEV.read_text().replace("  - name: local-device-1\n", "  - tags: {site: paris}\n  - tags: {site: lyon}\n")
    config.write_text(text)
    result = cli.invoke(app, ["local", "up", "-c", str(config), "--devices", "2"])
    assert result.exit_code == exit_codes.USAGE, result.output
    assert result.stderr.strip().splitlines() == [
        "error: --devices 2: the config's tag groups give tag 'site' two values ('paris', 'lyon'); one device "
        "cannot carry both"
    ]


# --- devices that simulate a healthy appliance -----------------------------------------------------


def _deployment(device: str, instance: str) -> Deployment:
    spec = application_spec(CONFIG)
    graph = documents.graph(
        spec, "123456789012", values={"device_id": device_id_for_name(device), "region": "us-east-1"}
    )
    planned = plan(graph, documents.camera_overrides(spec, "123456789012", graph), {spec.code_package})
    return Deployment(instance, device, planned, b"not even a tarball", {"model_node": b""}, None, "us-east-1")


def test_a_device_outside_the_appliance_devices_simulates_a_healthy_one(tmp_path: Path) -> None:
    settings = ApplianceSettings(output=tmp_path, ml_python=Path(sys.executable), devices=frozenset({"local-device-1"}))
    appliance = Appliance(settings)
    assert appliance.runs_applications("local-device-1") and not appliance.runs_applications("local-device-9")
    folder = appliance.start(_deployment("local-device-9", "applicationInstance-s"))
    assert appliance.health("applicationInstance-s") == ("RUNNING", None)  # at once: no process, no outputs
    assert sorted(p.name for p in folder.iterdir()) == [SIMULATED]
    document = json.loads((folder / SIMULATED).read_text())
    assert document["device"] == "local-device-9" and document["instance"] == "applicationInstance-s"
    assert wait_for_outputs(folder, 0)
    assert summary(folder) == (
        "this device simulates a healthy one: only local-device-1 run the application "
        "(python -m local_aws.emulator --appliance-devices)"
    )
    appliance.stop("applicationInstance-s")
    assert appliance.health("applicationInstance-s") == ("NOT_AVAILABLE", None)
    # a device that runs applications still starts one (this code asset cannot: ERROR, as before)
    appliance.start(_deployment("local-device-1", "applicationInstance-r"))
    appliance.stop_all()
    assert not (tmp_path / "local-device-1" / "applicationInstance-r" / SIMULATED).exists()


def test_every_device_runs_applications_unless_the_settings_name_some(tmp_path: Path) -> None:
    assert Appliance(ApplianceSettings()).runs_applications("anything")
    names = frozenset(f"local-device-{i}" for i in range(1, 13))
    appliance = Appliance(ApplianceSettings(output=tmp_path, devices=names))
    folder = appliance.start(_deployment("local-device-13", "applicationInstance-t"))
    assert summary(folder) == (
        "this device simulates a healthy one: only local-device-1, local-device-2, local-device-3, local-device-4, "
        "local-device-5, local-device-6, local-device-7, local-device-8 and 4 more run the application "
        "(python -m local_aws.emulator --appliance-devices)"
    )
