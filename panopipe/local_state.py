"""Where the local emulator listens, recorded by ``panopipe local up`` for the other commands.

The emulator process writes ``.panopipe/local.json`` (``python -m local_aws.emulator``). While a
command runs, boto3 is pointed there through the standard variables (``AWS_ENDPOINT_URL``: the
Panorama service shares the port) with the emulator's fake credentials; without the file, or with a
dead emulator, nothing changes and the commands use the real account.
"""

from __future__ import annotations

import os
from pathlib import Path

from local_aws.emulator_process import control, read_state
from panopipe import environ
from panopipe.project import ROOT

#: In the project, wherever the command runs from (one emulator per checkout).
STATE_FILE = ROOT / ".panopipe" / "local.json"


def apply_endpoint(path: Path | None = None) -> dict[str, str | None]:
    """Point this process at the recorded emulator (``path``: default :data:`STATE_FILE`).

    Returns what to restore afterwards.
    """
    state = read_state(path or STATE_FILE)
    if state is None or os.environ.get("AWS_ENDPOINT_URL"):
        return {}
    changes = state.env()
    saved = {name: os.environ.get(name) for name in changes}
    os.environ.update(changes)
    return saved


def restore(saved: dict[str, str | None]) -> None:
    """Undo :func:`apply_endpoint`."""
    environ.restore(saved)


def emulator_in_use() -> bool:
    """Whether this process's AWS endpoint (``AWS_ENDPOINT_URL``) is the local emulator (its health route answers).

    Set by :func:`apply_endpoint`, or by whoever started the emulator (a test, a script).
    """
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    if not endpoint:
        return False
    try:
        control(endpoint, "health", timeout=3)
    except (OSError, ValueError):
        return False
    return True
