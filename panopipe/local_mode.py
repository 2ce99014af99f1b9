"""``panopipe local up|down``: the emulator process, then the real CDK CLI deploying the real app into it.

``up`` starts ``python -m local_aws.emulator`` (moto plus the project's patches and its local
Panorama service, devices from the config: :func:`panorama_devices`) unless one already runs,
bootstraps the environment and runs ``cdk deploy '**'`` with the pinned CLI (the stacks live in a
Stage, which ``--all`` does not select). Wait loops poll every ``poll_seconds`` (default 1) instead of
the config's interval: a local run must not sleep a minute per poll. ``down`` stops the emulator and
its function processes.

The local devices: the config's named and id devices, then numbered ones for its tag groups —
``up(devices=N)`` (``panopipe local up --devices N``) registers ``local-device-1`` …
``local-device-N``, each carrying every tag of every tag group, so a deployment reaches N devices
through ListDevices' pages as a real fleet's does; without it each tag group gets one device of its
own, so a config of tag groups only never deploys to nothing. Every device reports ready and
healthy; the first :data:`~local_aws.appliance.runner.DEFAULT_APPLIANCE_DEVICES` (the config's named
devices first) also run the deployed application, the others simulate a healthy device: a running
device costs about 160 MiB and 2 processes (figures in ``local_aws.appliance.runner``), which 200 of
them would not fit on a 2-core, 24 GiB machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from local_aws.appliance.runner import DEFAULT_APPLIANCE_DEVICES
from local_aws.emulator_process import DEFAULT_REGION, EmulatorState, clean_environment, launch, read_state, terminate
from local_aws.panorama_devices import MAX_LOCAL_DEVICES, NUMBERED_PREFIX, device_records, device_spec
from panopipe import environ, exit_codes
from panopipe.config import EnvironmentConfig
from panopipe.local_state import STATE_FILE
from panopipe.project import ROOT

CDK = ROOT / "node_modules" / ".bin" / "cdk"
LOCAL_ACCOUNT = "123456789012"  # moto's account


class LocalModeError(Exception):
    """Something ``local up`` cannot do, in one line with what to do about it.

    ``exit_code``: :data:`~panopipe.exit_codes.AWS` (the default: the emulator or the CDK CLI fails),
    :data:`~panopipe.exit_codes.USAGE` for a config the local mode cannot take.
    """

    def __init__(self, message: str, exit_code: int = exit_codes.AWS) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class Deployment:
    """What ``up`` did: where the emulator listens and how long each part took."""

    state: EmulatorState
    started_emulator: bool
    seconds: dict[str, float]


def device_count_problem(count: int) -> str | None:
    """Why ``count`` cannot be the number of numbered local devices (None: it can)."""
    if 1 <= count <= MAX_LOCAL_DEVICES:
        return None
    return f"--devices {count}: give 1 to {MAX_LOCAL_DEVICES} local devices"


def panorama_devices(config: EnvironmentConfig, count: int | None = None) -> list[str]:
    """The local Panorama service's device specs (``local_aws.panorama_devices``) for ``config``.

    First the config's named and id devices, in config order (they are the first to run the
    deployed application), then numbered devices for its tag groups: with ``count``,
    ``local-device-1`` … ``local-device-<count>``, each carrying the tags of every tag group (groups
    that give one key two values cannot all be carried: :class:`LocalModeError`, usage); without,
    ``local-device-<i>`` for the i-th tag group, carrying that group's tags (none for a config
    without tag groups). A numbered device that the config also names is that one device, tagged.
    """
    if count is not None and (problem := device_count_problem(count)):
        raise LocalModeError(problem, exit_codes.USAGE)
    groups = [dict(device.tags) for device in config.devices if device.tags is not None]
    numbered: dict[str, dict[str, str]]
    if count is None:
        numbered = {f"{NUMBERED_PREFIX}{i}": tags for i, tags in enumerate(groups, start=1)}
    else:
        merged: dict[str, str] = {}
        for tags in groups:
            for key, value in tags.items():
                if merged.setdefault(key, value) != value:
                    raise LocalModeError(
                        f"--devices {count}: the config's tag groups give tag {key!r} two values "
                        f"({merged[key]!r}, {value!r}); one device cannot carry both",
                        exit_codes.USAGE,
                    )
        numbered = {f"{NUMBERED_PREFIX}{i}": merged for i in range(1, count + 1)}
    specs = []
    for device in config.devices:
        if device.tags is None:
            label = str(device.name or device.id)
            specs.append(device_spec(label if device.name else f"id:{label}", numbered.pop(label, None)))
    return specs + [device_spec(name, tags) for name, tags in numbered.items()]


def describe_devices(specs: list[str]) -> str:
    """The devices of ``specs`` in one line: how many, their names, their tags, which run the application."""
    records = list(device_records(specs).values())
    names = [r.name for r in records]
    shown = ", ".join(names) if len(names) <= 4 else f"{', '.join(names[:2])} … {names[-1]}"
    tagged: dict[str, int] = {}
    for record in records:
        if record.tags:
            label = ",".join(f"{k}={v}" for k, v in sorted(record.tags.items()))
            tagged[label] = tagged.get(label, 0) + 1
    tags = "; ".join(f"{count} tagged {label}" for label, count in tagged.items())
    line = f"{len(records)} device{'s' if len(records) > 1 else ''} ({shown}{'; ' + tags if tags else ''})"
    if len(records) > DEFAULT_APPLIANCE_DEVICES:
        line += (
            f": the first {DEFAULT_APPLIANCE_DEVICES} run the deployed application, the other "
            f"{len(records) - DEFAULT_APPLIANCE_DEVICES} simulate a healthy device"
        )
    return line


def running_devices(state: EmulatorState) -> dict[str, tuple[str, dict[str, str]]] | None:
    """Device id → (name, tags) of the running emulator's Panorama service (None: it did not answer)."""
    from botocore.exceptions import BotoCoreError, ClientError

    from lambda_handlers.aws import panorama

    found: dict[str, tuple[str, dict[str, str]]] = {}
    try:
        with environ.environment({**state.env(), "AWS_MAX_ATTEMPTS": "1"}, cleared=("AWS_PROFILE",)):
            client = panorama.new_client(state.region)
            token: str | None = None
            while True:
                page = client.list_devices(**({"NextToken": token} if token else {}))  # type: ignore[arg-type]
                for device in page["Devices"]:
                    found[device["DeviceId"]] = (device.get("Name", ""), dict(device.get("Tags") or {}))
                token = page.get("NextToken")
                if not token:
                    return found
    except (BotoCoreError, ClientError, OSError, KeyError):
        return None


def cli_environment(endpoint: str, region: str, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The CDK CLI's environment: the pinned Node and CLI and this venv first, the emulator's AWS_*."""
    env = dict(os.environ if base is None else base)
    first = (ROOT / "node_modules" / "node" / "bin", ROOT / "node_modules" / ".bin", Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([*(str(p) for p in first), env.get("PATH", "")])
    env.update(
        CDK_DISABLE_VERSION_CHECK="1", CDK_DISABLE_CLI_TELEMETRY="true", JSII_SILENCE_WARNING_UNTESTED_NODE_VERSION="1"
    )
    return clean_environment(env, endpoint, region)


def up(
    config_path: Path,
    config: EnvironmentConfig,
    *,
    poll_seconds: int = 1,
    devices: int | None = None,
    state_file: Path = STATE_FILE,
    say: Callable[[str], None] = print,
) -> Deployment:
    """Start (or reuse) the emulator, bootstrap, and deploy every stack of ``config``'s stage.

    ``devices``: register ``local-device-1`` … ``local-device-<devices>`` (:func:`panorama_devices`).
    """
    if not CDK.exists():
        raise LocalModeError(f"{CDK} is missing: run `make local` (it installs the pinned CDK CLI)")
    if config.account not in (None, LOCAL_ACCOUNT):
        raise LocalModeError(
            f"{config_path}: account {config.account} cannot be emulated; leave account unset", exit_codes.USAGE
        )
    specs = panorama_devices(config, devices)
    seconds: dict[str, float] = {}
    clock = time.monotonic()
    state = read_state(state_file)
    started = state is None
    if state is None:
        try:
            region = config.region or DEFAULT_REGION
            state = launch(state_file, region=region, panorama_devices=specs)
        except RuntimeError as error:
            raise LocalModeError(str(error)) from None
        say(f"local AWS started at {state.endpoint} (pid {state.pid}) with {describe_devices(specs)}")
    else:
        say(running_message(state, specs))
    seconds["emulator"] = time.monotonic() - clock
    seconds.update(deploy(state.endpoint, state.region, config_path, poll_seconds=poll_seconds, say=say))
    return Deployment(state, started, seconds)


def running_message(state: EmulatorState, specs: list[str]) -> str:
    """What ``up`` says of an emulator that already runs: whether its devices are the ones ``specs`` ask for."""
    running = running_devices(state)
    wanted = {r.device_id: (r.name, r.tags) for r in device_records(specs).values()}
    where = f"local AWS already running at {state.endpoint} (pid {state.pid})"
    if running == wanted:
        return f"{where} with the devices asked for: {describe_devices(specs)}"
    if running is None:
        return f"{where}; its devices are the ones it started with (`panopipe local down` first to change them)"
    return (
        f"{where} with {len(running)} device{'s' if len(running) != 1 else ''}, not the {describe_devices(specs)} "
        "asked for: its devices are the ones it started with (`panopipe local down` first to change them)"
    )


def deploy(
    endpoint: str, region: str, config_path: Path, *, poll_seconds: int = 1, say: Callable[[str], None] = print
) -> dict[str, float]:
    """Bootstrap and ``cdk deploy '**'`` into the emulator at ``endpoint``; seconds per CLI call."""
    seconds: dict[str, float] = {}
    env = cli_environment(endpoint, region)
    with tempfile.TemporaryDirectory() as empty:  # no cdk.json there: bootstrapping needs no synth
        _cdk(["bootstrap", f"aws://{LOCAL_ACCOUNT}/{region}"], Path(empty), env, "bootstrap", seconds, say)
    overrides = ["-c", f"config={config_path.resolve()}", "-c", f"config.runs.poll_seconds={poll_seconds}"]
    _cdk(["deploy", "**", "--require-approval", "never", *overrides], ROOT, env, "deploy", seconds, say)
    return seconds


def _cdk(
    args: list[str], cwd: Path, env: dict[str, str], what: str, seconds: dict[str, float], say: Callable[[str], None]
) -> None:
    say(f"cdk {what} …")
    clock = time.monotonic()
    result = subprocess.run(
        [str(CDK), *args, "--no-notices"], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    seconds[what] = time.monotonic() - clock
    if result.returncode != 0:
        raise LocalModeError(f"cdk {what} failed (exit {result.returncode}):\n{result.stderr[-4000:]}")


def down(state_file: Path = STATE_FILE) -> bool:
    """Stop the emulator; False if none was running."""
    return terminate(state_file)
