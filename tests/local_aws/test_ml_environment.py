"""The ML environment is made once, however many workers ask for it at the same time."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from local_aws.ml import environment


def test_concurrent_creators_build_once_and_never_replace_an_environment_in_use(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two workers racing used to build two and delete the first one's while its model server ran."""
    built: list[str] = []

    def fake_run(command: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        if command[1:3] == ["-m", "venv"]:  # python -m venv <folder>: a python and nothing else
            built.append(command[3])
            (Path(command[3]) / "bin").mkdir(parents=True)
            (Path(command[3]) / "bin" / "python").write_text("")
            time.sleep(0.2)  # a build takes a while: the other creator arrives meanwhile
        return subprocess.CompletedProcess(command, 0, "", "")

    monkeypatch.setattr(subprocess, "run", fake_run)  # the module calls subprocess.run
    venv = tmp_path / "ml-venv"
    pythons: list[Path] = []
    workers = [threading.Thread(target=lambda: pythons.append(environment.ensure(venv=venv))) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()

    assert len(built) == 1, built
    assert pythons == [venv / "bin" / "python"] * 4 and environment.ready(venv)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ml-venv", "ml-venv.lock"], "no building folder left"
