"""The ML environment: a venv of its own (``.panopipe/ml-venv``) with the pinned ML stack, made on first use.

mxnet 1.9.1 (what SageMaker's built-in image classification and Neo's MXNet target run) needs numpy
< 1.24, which the project's venv cannot have, so training jobs and the appliance's model runtime run
in this environment, as they would run in their own containers. It is created from
``requirements.txt`` next to this module with the project venv's Python, once; a stamp file holding
the hash of the requirements makes a changed pin rebuild it. Nothing here runs at synth or in product
code: only the local AWS (``local_aws``) and the tests that exercise it use it.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from panopipe.project import ROOT

REQUIREMENTS = Path(__file__).resolve().parent / "requirements.txt"
#: Where the environment lives (override with PANOPIPE_ML_VENV, e.g. a shared cache in CI).
DEFAULT_LOCATION = ROOT / ".panopipe" / "ml-venv"
_STAMP = "panopipe-requirements.sha256"


class MLEnvironmentError(RuntimeError):
    """The ML environment could not be created (pip's last lines say why)."""


def location() -> Path:
    """The environment's folder."""
    return Path(os.environ.get("PANOPIPE_ML_VENV") or DEFAULT_LOCATION)


def _python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _wanted() -> str:
    return hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()


def ready(venv: Path | None = None) -> bool:
    """Whether the environment exists and was made from the current requirements."""
    venv = venv or location()
    stamp = venv / _STAMP
    return _python(venv).exists() and stamp.is_file() and stamp.read_text().strip() == _wanted()


def ensure(say: Callable[[str], None] = lambda _: None, venv: Path | None = None) -> Path:
    """The environment's python, creating (or rebuilding) the environment first if needed.

    Safe against concurrent creators (test workers, a training job and an appliance): one builds
    while the others wait on a file lock, then find it ready; a replaced environment could still be
    in use by another process's model server. It builds in a temporary folder and renames it into
    place, so a build that fails or is killed never leaves a half-made environment.
    """
    venv = venv or location()
    if ready(venv):
        return _python(venv)
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.with_name(f"{venv.name}.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if this process dies
        if ready(venv):  # another creator made it meanwhile
            return _python(venv)
        return _build(venv, say)


def _build(venv: Path, say: Callable[[str], None]) -> Path:
    started = time.monotonic()
    say(f"creating the ML environment {venv} (mxnet, numpy; once) …")
    building = venv.with_name(f"{venv.name}.building-{os.getpid()}")
    shutil.rmtree(building, ignore_errors=True)
    try:
        subprocess.run([sys.executable, "-m", "venv", str(building)], check=True, capture_output=True)
        result = subprocess.run(
            [
                str(_python(building)),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
                str(REQUIREMENTS),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-5:])
            raise MLEnvironmentError(f"pip could not install {REQUIREMENTS}:\n{tail}")
        (building / _STAMP).write_text(_wanted() + "\n")
        shutil.rmtree(venv, ignore_errors=True)
        building.rename(venv)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    say(f"ML environment ready in {time.monotonic() - started:.0f} s")
    return _python(venv)
