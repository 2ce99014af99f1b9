"""The local AWS as a separate, long-lived process, from its clients' side: start, find, stop, control.

``panopipe local up`` must leave the local AWS running after it returns, for ``panopipe run``,
``watch`` and ``status`` and for the deployed functions, so the emulator runs in a process of its
own (``python -m local_aws.emulator``) that writes a state file once it serves:
:func:`launch`, :func:`read_state` and :func:`terminate` work with that file, :func:`control` sends
its control routes. A client reaches it with :func:`client_env`: the endpoint, fake credentials
(the emulator accepts any) and nothing of the developer's real AWS configuration.

This module imports neither moto nor the rest of the package, so the CLI's commands stay quick.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

DEFAULT_REGION = "us-east-1"
#: Path prefix of the emulator's own routes (health, failure injection, reset).
CONTROL_PREFIX = "/_panopipe/"
_PROJECT_ROOT = Path(__file__).resolve().parents[1]


def client_env(endpoint: str, region: str = DEFAULT_REGION) -> dict[str, str]:
    """The ``AWS_*`` variables a client process needs to use the emulator at ``endpoint``.

    Fake credentials (the emulator accepts any), and no access to the developer's real AWS
    configuration or to instance metadata.
    """
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }


def clean_environment(env: Mapping[str, str], endpoint: str, region: str = DEFAULT_REGION) -> dict[str, str]:
    """``env`` without any ``AWS_*`` (profiles, real credentials, endpoints) plus :func:`client_env`."""
    clean = {key: value for key, value in env.items() if not key.startswith("AWS_")}
    clean.update(client_env(endpoint, region))
    return clean


@dataclass(frozen=True)
class EmulatorState:
    """What the state file of a running emulator process says."""

    endpoint: str
    port: int
    pid: int
    region: str = DEFAULT_REGION
    started: float = 0.0

    def env(self) -> dict[str, str]:
        """The ``AWS_*`` variables a client process needs."""
        return client_env(self.endpoint, self.region)

    def alive(self) -> bool:
        """Whether the process still exists."""
        return _pid_alive(self.pid)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def write_state(path: Path, state: EmulatorState) -> None:
    """Write ``state`` to ``path`` atomically (what the emulator process does once it serves)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False) as handle:
        json.dump(asdict(state), handle, indent=1)
    Path(handle.name).replace(path)


def read_state(path: Path) -> EmulatorState | None:
    """The state of the emulator process that wrote ``path``, or None (no file, or the process is gone)."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
        state = EmulatorState(**document)
    except (OSError, ValueError, TypeError):
        return None
    return state if state.alive() else None


def launch(
    state_file: Path,
    *,
    port: int = 0,
    region: str = DEFAULT_REGION,
    panorama_devices: Sequence[str] = (),
    timeout: float = 60.0,
) -> EmulatorState:
    """Start ``python -m local_aws.emulator`` detached and wait until it serves.

    ``panorama_devices`` are the local Panorama service's appliances (names, or ``id:<device id>``;
    none: the emulator's default). Its output goes to the state file's name with ``.log``. Raises
    RuntimeError with the log's tail if it does not come up within ``timeout`` seconds.
    """
    state_file = Path(state_file).resolve()
    existing = read_state(state_file)
    if existing is not None:
        raise RuntimeError(f"an emulator already runs at {existing.endpoint} (pid {existing.pid}, {state_file})")
    state_file.unlink(missing_ok=True)
    log_path = state_file.with_suffix(".log")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "local_aws.emulator", "--port", str(port), "--region", region]
    command += ["--state-file", str(state_file)]
    for device in panorama_devices:
        command += ["--panorama-device", device]
    with open(log_path, "ab") as log:
        child = subprocess.Popen(
            command,
            cwd=_PROJECT_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = read_state(state_file)
        if state is not None and state.pid == child.pid:
            return state
        if child.poll() is not None:
            break
        time.sleep(0.05)
    if child.poll() is None:
        child.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(10)
    tail = log_path.read_text(encoding="utf-8", errors="replace")[-2000:]
    raise RuntimeError(f"the emulator did not start (exit {child.poll()}); its log {log_path} ends:\n{tail}")


def terminate(state_file: Path, timeout: float = 15.0) -> bool:
    """Stop the emulator process of ``state_file`` (SIGTERM, then SIGKILL); False if none ran."""
    state = read_state(state_file)
    if state is None or not _serves(state):  # gone, or its pid now belongs to another process
        Path(state_file).unlink(missing_ok=True)
        return False
    os.kill(state.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _pid_alive(state.pid):
        with contextlib.suppress(ChildProcessError):
            os.waitpid(state.pid, os.WNOHANG)  # reap it if it is our child
        time.sleep(0.05)
    if _pid_alive(state.pid):
        os.kill(state.pid, signal.SIGKILL)
    Path(state_file).unlink(missing_ok=True)
    return True


def _serves(state: EmulatorState) -> bool:
    """Whether the emulator at ``state.endpoint`` answers its health route with ``state.pid``."""
    try:
        return int(control(state.endpoint, "health", timeout=3).get("pid", -1)) == state.pid
    except (OSError, ValueError):
        return False


def control(endpoint: str, route: str, body: Mapping[str, Any] | None = None, timeout: float = 10) -> dict[str, Any]:
    """Call the control route ``route`` of the emulator at ``endpoint``: GET without ``body``, else POST.

    Raises ``urllib.error.HTTPError`` when the emulator refuses (400: a bad body, 404: an unknown
    route or device).
    """
    data = None if body is None else json.dumps(body).encode("utf-8")
    request = urllib.request.Request(
        f"{endpoint.rstrip('/')}{CONTROL_PREFIX}{route}",
        data=data,
        method="GET" if data is None else "POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:  # the local emulator (loopback)
        document: dict[str, Any] = json.loads(response.read())
        return document
