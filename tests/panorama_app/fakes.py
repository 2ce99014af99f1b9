"""Stand-ins for the device-only Panorama SDK (a device library, not an AWS API)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
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
}


class Node:
    """inputs.<name>.get(), outputs.video_out.put(), call(inputs, model_node_name)."""

    def __init__(
        self,
        model: Callable[[dict[str, np.ndarray]], tuple[np.ndarray, ...]],
        streams: Callable[[], list[Stream]],
        **parameters: Any,
    ) -> None:
        values = {**DEFAULTS, **parameters}
        self.inputs = type("Inputs", (), {name: Port(value) for name, value in values.items()})()
        self.inputs.video_in = Port(streams)
        self.outputs = type("Outputs", (), {"video_out": Port()})()
        self.model = model
        self.calls: list[tuple[dict[str, np.ndarray], str]] = []

    def call(self, inputs: dict[str, np.ndarray], name: str) -> tuple[np.ndarray, ...]:
        self.calls.append(({k: v.copy() for k, v in inputs.items()}, name))
        return self.model(inputs)


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
