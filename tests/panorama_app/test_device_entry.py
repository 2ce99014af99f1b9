"""The container's entry point, started the three ways it is run, against stand-in SDKs.

- ``python3 /panorama/app.py`` on the appliance (``__name__ == "__main__"``);
- AWS's Panorama Test Utility (aws-panorama-samples, samples/common/test_utility/panorama_test_utility_run.py):
  ``namespace = {}; exec(compile(source, name, "exec"), namespace, namespace)``, where ``__name__`` is not
  in the namespace and resolves to the builtins module's, "builtins";
- imported by tests and tools: then it must not start.
"""

from __future__ import annotations

import importlib
import io
import logging
import os
import re
import runpy
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import numpy as np
import pytest

import panorama_app
from panorama_app import application
from tests.panorama_app.fakes import EndOfVideo, Stream, frames_until_end, sdk_module, ssd_outputs

APP_DIR = Path(panorama_app.__file__).parent
ENTRY = APP_DIR / "device_entry.py"
FRAMES = 3


class FakeCloudWatch:
    calls: ClassVar[list[dict[str, Any]]] = []

    def put_metric_data(self, **request: Any) -> None:
        self.calls.append(request)


@pytest.fixture
def sdk(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """A fake ``panoramasdk`` in sys.modules whose video ends after FRAMES frames; CloudWatch stays local."""

    def streams() -> list[Stream]:
        return [Stream(np.zeros((480, 640, 3), np.uint8), stream_id="camera_1")]

    module = sdk_module(lambda inputs: ssd_outputs([(1, 0.9, (0, 64, 256, 256))]), frames_until_end(FRAMES, streams))
    monkeypatch.setitem(sys.modules, "panoramasdk", module)
    monkeypatch.setattr(application, "cloudwatch_factory", lambda region: FakeCloudWatch)
    monkeypatch.setattr(FakeCloudWatch, "calls", [])
    yield module


def _assert_processed(sdk: ModuleType) -> None:
    (node,) = sdk.nodes
    assert len(node.calls) == FRAMES and len(node.outputs.video_out.sent) == FRAMES
    assert node.outputs.video_out.sent[0][0].rects  # inferred on and drawn


def test_runs_when_the_test_utility_execs_its_source_in_an_empty_namespace(sdk: ModuleType) -> None:
    namespace: dict[str, Any] = {}
    code = compile(ENTRY.read_text(), "app.py", "exec")
    with pytest.raises(EndOfVideo):  # the utility's end of video ends the loop; it catches that
        exec(code, namespace, namespace)
    assert "__name__" not in namespace and eval("__name__", namespace) == "builtins"
    _assert_processed(sdk)
    assert FakeCloudWatch.calls  # the metrics went out too


def test_runs_as_a_script(sdk: ModuleType) -> None:
    with pytest.raises(EndOfVideo):
        runpy.run_path(str(ENTRY), run_name="__main__")
    _assert_processed(sdk)


def test_does_not_start_when_imported(sdk: ModuleType) -> None:
    module = importlib.import_module("panorama_app.device_entry")
    assert sdk.nodes == [] and callable(module.main)


def test_logs_reach_the_console_once_though_the_root_logger_was_configured_first(
    sdk: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    root_lines = io.StringIO()
    root_handler = logging.StreamHandler(root_lines)  # as the SDK or the Test Utility may configure it
    logging.getLogger().addHandler(root_handler)
    try:
        for _ in range(2):  # started twice in one process: still one handler, one line per event
            with pytest.raises(EndOfVideo):
                runpy.run_path(str(ENTRY), run_name="__main__")
    finally:
        logging.getLogger().removeHandler(root_handler)
    err = capsys.readouterr().err
    starts = [line for line in err.splitlines() if "panorama_app: starting: object_detection" in line]
    assert len(starts) == 2, err
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO panorama_app: starting", starts[0])
    assert "starting" not in root_lines.getvalue()  # no second copy through the root logger
    assert len(logging.getLogger("panorama_app").handlers) == 1


FAKE_SDK = r'''
"""panoramasdk as seen by the application: 3 batches of two streams (the second cached), then the end."""
import sys

import numpy as np


def say(*words):  # one write per line: the metrics thread prints too
    sys.stdout.write(" ".join(map(str, words)) + "\n")
    sys.stdout.flush()


class _Value:
    def __init__(self, value):
        self.value = value

    def get(self):
        return self.value


class media:
    def __init__(self, stream_id, is_cached):
        self.image = np.zeros((480, 640, 3), np.uint8)
        self.stream_id = stream_id
        self.is_cached = is_cached

    def add_rect(self, x1, y1, x2, y2):
        say("rect", self.stream_id)

    def add_label(self, text, x, y):
        pass


class _Video:
    served = 0

    def get(self):
        if _Video.served == 3:
            raise SystemExit(0)  # the end of the test video
        _Video.served += 1
        return [media("camera_1", False), media("camera_2", True)]


class _Out:
    def put(self, streams):
        say("video_out", len(streams))


PARAMETERS = dict(
    threshold=0.5, classes_of_interest="person", log_level="INFO", device_id="device-1", region="us-east-1",
    metrics_namespace="PanoramaPipeline/test", metrics_interval=60.0, task="object_detection",
    class_names="car,person", input_shape="1,3,512,512", input_layout="NCHW", input_name="input0",
)


class node:
    def __init__(self):
        ports = {name: _Value(value) for name, value in PARAMETERS.items()}
        ports["video_in"] = _Video()
        self.inputs = type("Inputs", (), ports)()
        self.outputs = type("Outputs", (), {"video_out": _Out()})()

    def call(self, inputs, name):
        say("call", name, *inputs)
        ids = np.full((1, 100, 1), -1.0, np.float32)
        scores = np.full((1, 100, 1), -1.0, np.float32)
        boxes = np.zeros((1, 100, 4), np.float32)
        ids[0, 0, 0], scores[0, 0, 0], boxes[0, 0] = 1, 0.9, (0, 64, 256, 256)
        return [ids, scores, boxes]  # a list, not a tuple
'''

FAKE_BOTO3 = r'''
"""boto3, kept off the network: the CloudWatch client prints what it would send."""
import sys


class _CloudWatch:
    def put_metric_data(self, Namespace, MetricData):
        sys.stdout.write("put_metric_data %s %d\n" % (Namespace, len(MetricData)))
        sys.stdout.flush()


def client(service, region_name=None):
    assert service == "cloudwatch"
    return _CloudWatch()
'''


def _container(root: Path) -> Path:
    """/panorama as the Dockerfile's COPY instructions lay it out, under ``root``."""
    repo = APP_DIR.parent
    dockerfile = (APP_DIR / "Dockerfile").read_text().replace("\\\n", " ")
    for line in dockerfile.splitlines():
        words = line.split()
        if not words or words[0] != "COPY":
            continue
        *sources, destination = words[1:]
        assert destination.startswith("/panorama/"), line
        for source in sources:
            target = root / destination.removeprefix("/panorama/")
            if destination.endswith("/"):
                target /= Path(source).name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(repo / source, target)
    (root / "panoramasdk.py").write_text(textwrap.dedent(FAKE_SDK))
    (root / "boto3.py").write_text(textwrap.dedent(FAKE_BOTO3))
    return root / "app.py"


def test_the_container_layout_runs_as_python3_app_py(tmp_path: Path) -> None:
    """``python3 /panorama/app.py`` over exactly the files the Dockerfile copies (nothing from the repo)."""
    app = _container(tmp_path)
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONSTARTUP")}
    done = subprocess.run(
        [sys.executable, str(app)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout.splitlines()
    assert out.count("call model_node input0") == 3  # the cached stream is not inferred on
    assert out.count("rect camera_1") == 3 and "rect camera_2" not in out
    assert out.count("video_out 2") == 3  # both streams are passed on
    assert "put_metric_data PanoramaPipeline/test 1" in out
    starts = [line for line in done.stderr.splitlines() if " INFO panorama_app: starting: object_detection" in line]
    assert len(starts) == 1, done.stderr


def test_the_log_level_parameter_sets_what_reaches_the_console(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    module = sdk_module(lambda inputs: ssd_outputs([]), frames_until_end(1, lambda: []), log_level="WARNING")
    monkeypatch.setitem(sys.modules, "panoramasdk", module)
    monkeypatch.setattr(application, "cloudwatch_factory", lambda region: FakeCloudWatch)
    with pytest.raises(EndOfVideo):
        runpy.run_path(str(ENTRY), run_name="__main__")
    logging.getLogger("panorama_app.metrics").warning("shown")
    err = capsys.readouterr().err
    assert "starting" not in err and "WARNING panorama_app.metrics: shown" in err
