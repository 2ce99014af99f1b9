"""Stand-ins for the device-only Panorama SDK (a device library, not an AWS API)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np


class Port:
    def __init__(self, value: Any = None) -> None:
        self.value = value
        self.sent: list[Any] = []

    def get(self) -> Any:
        return self.value() if callable(self.value) else self.value

    def put(self, value: Any) -> None:
        self.sent.append(value)


@dataclass
class Stream:
    image: np.ndarray
    stream_id: str = "camera_1"
    is_cached: bool = False  # SDK 1.1+: the stream had no new frame, this is the previous one again
    rects: list[tuple[float, float, float, float]] = field(default_factory=list)
    labels: list[tuple[str, float, float]] = field(default_factory=list)

    def add_rect(self, x1: float, y1: float, x2: float, y2: float) -> None:
        self.rects.append((x1, y1, x2, y2))

    def add_label(self, text: str, x: float, y: float) -> None:
        self.labels.append((text, x, y))


DEFAULTS: dict[str, Any] = {
    "threshold": 0.5,
    "classes_of_interest": "person",
    "log_level": "INFO",
    "device_id": "device-1",
    "region": "us-east-1",
    "metrics_namespace": "PanoramaPipeline/panopipe-dev",
    "metrics_interval": 60.0,
    "task": "object_detection",
    "class_names": "car,person",
    "input_shape": "1,3,512,512",
    "input_layout": "NCHW",
    "input_name": "data",
}


class Node:
    """inputs.<name>.get(), outputs.video_out.put(), call(inputs, model_node_name)."""

    def __init__(
        self,
        model: Callable[[dict[str, np.ndarray]], Any],  # what the SDK's call returns: any sequence
        streams: Callable[[], list[Any]],  # Stream, or media objects of another shape
        **parameters: Any,
    ) -> None:
        values = {**DEFAULTS, **parameters}
        self.inputs = type("Inputs", (), {name: Port(value) for name, value in values.items()})()
        self.inputs.video_in = Port(streams)
        self.outputs = type("Outputs", (), {"video_out": Port()})()
        self.model = model
        self.calls: list[tuple[dict[str, np.ndarray], str]] = []

    def call(self, inputs: dict[str, np.ndarray], name: str) -> Any:
        self.calls.append(({k: v.copy() for k, v in inputs.items()}, name))
        return self.model(inputs)


class EndOfVideo(Exception):
    """What the Test Utility's SDK raises when its video file ends (TestUtilityEndOfVideo)."""


def sdk_module(
    model: Callable[[dict[str, np.ndarray]], Any], streams: Callable[[], list[Stream]], **parameters: Any
) -> ModuleType:
    """A stand-in ``panoramasdk`` module: ``node`` is a :class:`Node` built without arguments, as the
    application's code node subclasses it; ``nodes`` lists the nodes created."""
    module = ModuleType("panoramasdk")
    nodes: list[Node] = []

    class node(Node):  # the SDK's name
        def __init__(self) -> None:
            super().__init__(model, streams, **parameters)
            nodes.append(self)

    module.node = node  # type: ignore[attr-defined]
    module.nodes = nodes  # type: ignore[attr-defined]
    return module


def frames_until_end(count: int, make: Callable[[], list[Stream]]) -> Callable[[], list[Stream]]:
    """video_in.get(): ``count`` batches of streams, then :class:`EndOfVideo` (as the Test Utility does)."""
    served = {"n": 0}

    def get() -> list[Stream]:
        if served["n"] >= count:
            raise EndOfVideo
        served["n"] += 1
        return make()

    return get


def ssd_outputs(
    rows: list[tuple[float, float, tuple[float, float, float, float]]], n: int = 100
) -> tuple[np.ndarray, ...]:
    """SSD-style outputs: class ids (1,n,1) with -1 for empty rows, scores (1,n,1), boxes (1,n,4)."""
    ids = np.full((1, n, 1), -1.0, dtype=np.float32)
    scores = np.full((1, n, 1), -1.0, dtype=np.float32)
    boxes = np.zeros((1, n, 4), dtype=np.float32)
    for i, (class_id, score, box) in enumerate(rows):
        ids[0, i, 0], scores[0, i, 0], boxes[0, i] = class_id, score, box
    return ids, scores, boxes
