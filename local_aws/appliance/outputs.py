"""Where a local device's application wrote its HDMI output, and a one-paragraph summary of it.

For the commands that run in another process than the emulator (``panopipe local run``, ``make local``):
the emulator started by ``panopipe local up`` writes under :data:`~local_aws.appliance.runner.DEFAULT_OUTPUT`,
and the outputs appear once the cameras have given ``max_frames`` frames (``counts.json`` last).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from local_aws.appliance.runner import DEFAULT_OUTPUT, SIMULATED


def folder_of(device_name: str, instance_id: str, output: Path = DEFAULT_OUTPUT) -> Path:
    """The instance's folder: ``<output>/<device name>/<application instance id>``."""
    return output / device_name / instance_id


def wait_for_outputs(folder: Path, timeout: float = 120.0) -> bool:
    """Whether ``counts.json`` (written after the videos and the contact sheet) appears within ``timeout``.

    An instance on a device that simulates a healthy one (``simulated.json``) has nothing to wait for.
    """
    deadline = time.monotonic() + timeout
    while not (folder / "counts.json").exists() and not (folder / SIMULATED).exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.25)
    return True


def summary(folder: Path) -> str | None:
    """Lines naming the annotated output and the per-class counts, or None before the outputs exist.

    For an instance on a device that simulates a healthy one: the line saying so.
    """
    try:
        return str(json.loads((folder / SIMULATED).read_text())["reason"])
    except (OSError, ValueError, KeyError):
        pass
    try:
        streams = json.loads((folder / "counts.json").read_text())["streams"]
        stats = json.loads((folder / "stats.json").read_text())
    except (OSError, ValueError, KeyError):
        return None
    lines = []
    for stream, seen in sorted(streams.items()):
        counts = ", ".join(f"{name} {count}" for name, count in sorted(seen["objects"].items())) or "no count line"
        lines.append(f"{stream}: {counts} (over {seen['frames']} frames)")
    shown = [folder / "contact-sheet.png", *sorted(folder.glob("hdmi-*.avi"))]
    lines.append("annotated output: " + ", ".join(str(path) for path in shown if path.exists()))
    lines.append(f"{stats.get('frames_per_second')} frames/s; counts in {folder / 'counts.json'}")
    return "\n".join(lines)
