"""``panopipe local up|down``: the emulator process, then the real CDK CLI deploying the real app into it.

``up`` starts ``python -m local_aws.emulator`` (moto plus the project's patches and its local
Panorama service, devices from the config) unless one already runs, bootstraps the environment and
runs ``cdk deploy '**'`` with the pinned CLI (the stacks live in a Stage, which ``--all`` does not
select). Wait loops poll every ``poll_seconds`` (default 1) instead of the config's interval: a local
run must not sleep a minute per poll. ``down`` stops the emulator and its function processes.
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

from local_aws.emulator_process import DEFAULT_REGION, EmulatorState, clean_environment, launch, read_state, terminate
from panopipe import exit_codes
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


def panorama_devices(config: EnvironmentConfig) -> list[str]:
    """The local Panorama service's devices for the config's devices (names, or ``id:<device id>``)."""
    return [device.name if device.name else f"id:{device.id}" for device in config.devices]


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
    state_file: Path = STATE_FILE,
    say: Callable[[str], None] = print,
) -> Deployment:
    """Start (or reuse) the emulator, bootstrap, and deploy every stack of ``config``'s stage."""
    if not CDK.exists():
        raise LocalModeError(f"{CDK} is missing: run `make local` (it installs the pinned CDK CLI)")
    if config.account not in (None, LOCAL_ACCOUNT):
        raise LocalModeError(
            f"{config_path}: account {config.account} cannot be emulated; leave account unset", exit_codes.USAGE
        )
    seconds: dict[str, float] = {}
    clock = time.monotonic()
    state = read_state(state_file)
    started = state is None
    if state is None:
        try:
            region = config.region or DEFAULT_REGION
            state = launch(state_file, region=region, panorama_devices=panorama_devices(config))
        except RuntimeError as error:
            raise LocalModeError(str(error)) from None
        say(f"local AWS started at {state.endpoint} (pid {state.pid})")
    else:
        say(
            f"local AWS already running at {state.endpoint} (pid {state.pid}); its devices are the ones it "
            "started with (`panopipe local down` first to change them)"
        )
    seconds["emulator"] = time.monotonic() - clock
    seconds.update(deploy(state.endpoint, state.region, config_path, poll_seconds=poll_seconds, say=say))
    return Deployment(state, started, seconds)


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
