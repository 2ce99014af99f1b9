"""Where the local emulator listens, recorded by ``panopipe local up`` for the other commands.

``.panopipe/local.json`` holds ``{"endpoint", "pid", "region"}``. While a command runs against it,
boto3 is pointed there through the standard variables (``AWS_ENDPOINT_URL``, also serving
Panorama on the same port) with the emulator's fake credentials; without the file (or with a dead
emulator) nothing changes and the commands use the real account.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

STATE_FILE = Path(".panopipe") / "local.json"
_FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


def read(path: Path = STATE_FILE) -> dict[str, Any] | None:
    """The recorded emulator, if its process is still alive."""
    try:
        state: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    try:
        os.kill(int(state["pid"]), 0)
    except (OSError, KeyError, ValueError):
        return None
    return state


def variables(state: dict[str, Any]) -> dict[str, str]:
    """The environment a client process needs to reach the emulator."""
    return {
        "AWS_ENDPOINT_URL": str(state["endpoint"]),
        "AWS_ENDPOINT_URL_PANORAMA": str(state["endpoint"]),
        "AWS_DEFAULT_REGION": str(state.get("region", "us-east-1")),
        "AWS_REGION": str(state.get("region", "us-east-1")),
        **_FAKE_CREDENTIALS,
    }


def apply_endpoint(path: Path = STATE_FILE) -> dict[str, str | None]:
    """Point this process at the recorded emulator; returns what to restore afterwards."""
    state = read(path)
    if state is None or os.environ.get("AWS_ENDPOINT_URL"):
        return {}
    changes = variables(state)
    saved = {name: os.environ.get(name) for name in changes}
    os.environ.update(changes)
    return saved


def restore(saved: dict[str, str | None]) -> None:
    """Undo :func:`apply_endpoint`."""
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
