"""The local appliance's stand-in for the device-only Panorama Application SDK (``import panoramasdk``).

The appliance runs the registered code package's ``/panorama/app.py`` in a process with this folder on
its path, as the device runs it with the real SDK. What it offers is what an application uses of the
SDK, with the SDK's names: ``node`` (subclassed by the code node) with ``inputs.<port>.get()`` (the
graph's parameter values with the instance's overrides; a list of media objects, one per camera, for
the video input) and ``outputs.<port>.put(media list)`` (the HDMI output), and
``call(inputs, model_node, time_out=None)`` → a tuple of arrays; ``media`` with ``image`` (BGR uint8),
``add_rect``, ``add_label`` (0–1 coordinates, ValueError outside), ``stream_id``, ``stream_uri``,
``time_stamp``, ``is_cached``.

It reads what to run from the JSON file named by ``PANOPIPE_APPLIANCE_CONFIG`` (written by
``local_aws.appliance.runner``). Cameras are a video file or an image folder each, read in a loop (a
camera does not end), as fast as the application takes frames (no 30 fps pacing). A model node is
served by ``model_server.py`` in the ML environment, started with the application (a model that cannot
load stops it). After
``max_frames`` the outputs are written and the cameras go quiet: ``get`` blocks, the process keeps
running, as an application on a device does. It imports nothing of the project.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

if TYPE_CHECKING:
    from local_aws.appliance.sdk._panopipe_hdmi import HdmiOutput
else:  # top-level on the application's path, which has nothing of the project
    from _panopipe_hdmi import HdmiOutput

_CONFIG = json.loads(Path(os.environ["PANOPIPE_APPLIANCE_CONFIG"]).read_text(encoding="utf-8"))
_OUTPUT = Path(_CONFIG["output"])
_IMAGES = {".png", ".jpg", ".jpeg", ".bmp"}


def _say(text: str) -> None:
    print(f"panoramasdk (local appliance): {text}", file=sys.stderr, flush=True)


def _status(state: str, **extra: Any) -> None:
    """``status.json``: how far the application got (the appliance's health reads it)."""
    path = _OUTPUT / "status.json"
    path.with_suffix(".tmp").write_text(json.dumps({"state": state, **extra}, sort_keys=True))
    path.with_suffix(".tmp").replace(path)


def _watch_parent(pid: int) -> None:
    """The appliance lives in the emulator: its application stops when the emulator is gone."""
    while True:
        time.sleep(0.5)
        if os.getppid() != pid:
            os._exit(0)


threading.Thread(target=_watch_parent, args=(int(_CONFIG["parent_pid"]),), daemon=True).start()


class media:  # the SDK's name
    """One camera frame: ``image`` and the annotations the device draws on the HDMI output."""

    def __init__(self, image: Any, stream_id: str, stream_uri: str) -> None:
        self.image = image
        self.stream_id = stream_id
        self.stream_uri = stream_uri
        self.is_cached = False  # every get gives every camera a new frame
        micro = int(time.time() * 1_000_000)
        self.time_stamp = (micro // 1_000_000, micro % 1_000_000)
        self._rects: list[tuple[float, ...]] = []
        self._labels: list[tuple[str, float, float]] = []

    @staticmethod
    def _check(*values: float) -> None:
        if any(not 0 <= v <= 1 for v in values):
            raise ValueError(f"coordinates must be between 0 and 1, got {values}")

    def add_rect(self, x1: float, y1: float, x2: float, y2: float) -> None:
        """A rectangle on the HDMI output (frame coordinates 0–1)."""
        self._check(x1, y1, x2, y2)
        self._rects.append((float(x1), float(y1), float(x2), float(y2)))

    def add_label(self, text: str, x1: float, y1: float) -> None:
        """A text on the HDMI output, at 0–1 coordinates."""
        self._check(x1, y1)
        self._labels.append((str(text), float(x1), float(y1)))


class _Camera:
    """A video file or an image folder, looped."""

    def __init__(self, name: str, source: str) -> None:
        self.name, self.source = name, Path(source)
        self._capture: Any = None
        if not self.source.exists():
            raise FileNotFoundError(f"camera {name}: no video file or image folder {source}")
        self._images: list[Path] = []
        if self.source.is_dir():
            self._images = sorted(p for p in self.source.iterdir() if p.suffix.lower() in _IMAGES)
            if not self._images:
                raise FileNotFoundError(f"camera {name}: no images in {source}")
        self._next = 0

    def read(self) -> Any:
        if self._images:
            path = self._images[self._next % len(self._images)]
            self._next += 1
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                raise OSError(f"camera {self.name}: cannot read {path}")
            return image
        for _ in range(2):
            if self._capture is None:
                self._capture = cv2.VideoCapture(str(self.source))
            ok, image = self._capture.read()
            if ok:
                return image
            self._capture.release()
            self._capture = None  # the end: loop
        raise OSError(f"camera {self.name}: cannot read frames from {self.source}")


class _Stats:
    """Where each frame's time goes: camera, the application (pre/post-processing, drawing), model, HDMI."""

    def __init__(self) -> None:
        self.frames = 0
        self.first: float | None = None
        self.camera = self.app = self.model_call = self.model_forward = self.hdmi = self.model_load = 0.0
        self._batch_started = 0.0
        self._calls_in_batch = 0.0

    def report(self) -> dict[str, Any]:
        wall = time.perf_counter() - (self.first or time.perf_counter())
        frames = max(1, self.frames)
        per_frame = {
            name: round(1000 * value / frames, 3)
            for name, value in {
                "camera_read": self.camera,
                "application": self.app,
                "model_call": self.model_call,
                "model_forward": self.model_forward,
                "hdmi_write": self.hdmi,
            }.items()
        }
        busy = self.app + self.model_call
        return {
            "frames": self.frames,
            "seconds": round(wall, 3),
            "model_load_seconds": round(self.model_load, 3),
            "frames_per_second": round(self.frames / wall, 2) if wall > 0 else None,
            "ms_per_frame": per_frame,
            "application_share": round(self.app / busy, 3) if busy else None,
            "model_call_share": round(self.model_call / busy, 3) if busy else None,
            "note": "application: the app's own time per frame (pre/post-processing, drawing, counting); "
            "model_call: node.call round trip (model_forward inside it: the MXNet forward on the CPU)",
        }


_STATS = _Stats()


class _Parameter:
    def __init__(self, value: Any) -> None:
        self._value = value

    def get(self) -> Any:
        return self._value


class _VideoIn:
    """The cameras wired to the code node: ``get()`` → one media object per camera."""

    def __init__(self, hdmi: HdmiOutput) -> None:
        self._cameras = [_Camera(c["name"], c["source"]) for c in _CONFIG["cameras"]]
        self._hdmi = hdmi
        self._max = int(_CONFIG["max_frames"])
        self._served = 0
        self._quiet = threading.Event()

    def get(self) -> list[media]:
        if self._served == 0:
            _status("running", pid=os.getpid())
        if self._served >= self._max:
            self._finish()
            self._quiet.wait()  # the cameras went quiet; the application keeps running
        started = time.perf_counter()
        if _STATS.first is None:
            _STATS.first = started
        frames = [media(c.read(), c.name, f"file://{c.source}") for c in self._cameras]
        _STATS._batch_started = now = time.perf_counter()
        _STATS._calls_in_batch = 0.0
        _STATS.camera += now - started
        self._served += 1
        return frames

    def _finish(self) -> None:
        if (_OUTPUT / "counts.json").exists():
            return
        stats = _STATS.report()
        paths = self._hdmi.close(stats)
        _status("cameras quiet", pid=os.getpid(), frames=_STATS.frames, stats=stats)
        _say(
            f"{_STATS.frames} frames at {stats['frames_per_second']} fps; cameras quiet now; HDMI output: "
            + ", ".join(f"{k} {v}" for k, v in paths.items())
        )


class _VideoOut:
    """The HDMI sink: ``put(media list)`` shows each frame with its annotations."""

    def __init__(self, hdmi: HdmiOutput) -> None:
        self._hdmi = hdmi

    def put(self, streams: list[media]) -> None:
        started = time.perf_counter()
        if _STATS._batch_started:
            _STATS.app += started - _STATS._batch_started - _STATS._calls_in_batch
            _STATS._batch_started = 0.0
        for stream in streams:
            self._hdmi.show(stream.stream_id, stream.image, stream._rects, stream._labels)
        _STATS.frames += 1
        _STATS.hdmi += time.perf_counter() - started


class _Ports:
    def __init__(self, ports: dict[str, Any], what: str) -> None:
        self.__dict__.update(ports)
        self._what = what

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(f"the code node has no {self._what} {name!r} in its graph")


def _protocol() -> ModuleType:
    spec = importlib.util.spec_from_file_location("_panopipe_model_protocol", _CONFIG["model_server"])
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _ModelNode:
    """A model node's server process (the ML environment), started with the application.

    The device starts an application's model nodes with it; a model that cannot load stops the
    application here (RuntimeError from the code node's construction: HealthStatus ERROR).
    """

    def __init__(self, name: str, asset: str) -> None:
        self.name = name
        self.protocol = _protocol()
        command = [_CONFIG["model_python"], _CONFIG["model_server"], asset]
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        message = self.protocol.read_message(self.process.stdout)
        if message is None or message[0] != b"R":
            raise RuntimeError(f"model node {name}: {self._failure(message)}")
        _say(f"model node {name} loaded: {message[1].decode()}")

    def _failure(self, message: tuple[bytes, bytes] | None) -> str:
        if message is None:
            return f"its model server stopped (exit {self.process.wait()})"
        return str(message[1].decode("utf-8", "replace"))

    def __call__(self, inputs: dict[str, Any]) -> tuple[Any, ...]:
        self.protocol.write_message(self.process.stdin, b"I", self.protocol.pack_arrays(inputs))
        message = self.protocol.read_message(self.process.stdout)
        if message is None or message[0] != b"O":
            raise RuntimeError(f"model node {self.name}: {self._failure(message)}")
        arrays = self.protocol.unpack_arrays(message[1])
        _STATS.model_forward += float(arrays.pop("_seconds"))
        return tuple(arrays[f"out{i}"] for i in range(len(arrays)))


class node:  # the SDK's name
    """The code node: its graph inputs and outputs, and ``call`` to run a model node."""

    def __init__(self) -> None:
        hdmi = HdmiOutput(_OUTPUT, int(_CONFIG["max_frames"]) * max(1, len(_CONFIG["cameras"])))
        inputs: dict[str, Any] = {name: _Parameter(value) for name, value in _CONFIG["parameters"].items()}
        inputs[_CONFIG["video_input"]] = _VideoIn(hdmi)
        self.inputs = _Ports(inputs, "input")
        self.outputs = _Ports({name: _VideoOut(hdmi) for name in _CONFIG["video_outputs"]}, "output")
        started = time.perf_counter()
        self._models = {name: _ModelNode(name, asset) for name, asset in sorted(_CONFIG["models"].items())}
        _STATS.model_load = time.perf_counter() - started

    def call(self, input: dict[str, Any], name: str, time_out: float | None = None) -> tuple[Any, ...]:
        """Run model node ``name`` on the named input arrays; the outputs, in the model's order."""
        started = time.perf_counter()
        model = self._models.get(name)
        if model is None:
            raise ValueError(f"no model node {name!r} in the graph (model nodes: {sorted(self._models)})")
        if not isinstance(input, dict) or not all(isinstance(v, np.ndarray) for v in input.values()):
            raise TypeError("call takes a dict of input name -> numpy array")
        try:
            return model(input)
        finally:
            elapsed = time.perf_counter() - started
            _STATS.model_call += elapsed
            _STATS._calls_in_batch += elapsed
