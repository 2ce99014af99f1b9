"""The on-device application, with the Panorama SDK node injected.

``panoramasdk`` exists only on the appliance (see ``device_entry.py``); everything here runs in
tests with numpy frames.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from panorama_app.metrics import MetricsPublisher, cloudwatch_factory
from panorama_app.postprocess import Detections, class_filter, count_by_class, decode_ssd, top_k
from panorama_app.preprocess import SCALINGS, Preprocessor

LOG = logging.getLogger("panorama_app")
TASKS = ("object_detection", "image_classification")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_CONSOLE_HANDLER = "panorama_app.console"
TOP_K = 3
#: The model's input tensor name (the same rule as the config's ``model.input_name``).
INPUT_NAME_PATTERN = r"^[a-zA-Z_][a-zA-Z0-9_:.]*$"


class _ConsoleHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to the *current* ``sys.stderr`` (a runner or test may replace it after the handler exists)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr  # emit runs under the handler's lock
        super().emit(record)


def configure_logging(level: str = "INFO") -> logging.Logger:
    """Give the application's logger ("panorama_app", metrics included) its own console handler.

    ``logging.basicConfig`` does nothing once the SDK or a test runner has configured the root logger,
    and then the application's lines never reach the console (the appliance's ``console_output``
    log). So the application configures its own logger instead: one handler however often it starts,
    ``level`` until :class:`Application` sets the ``log_level`` parameter's, and no propagation to the
    root logger (whose handlers would print every line a second time).
    """
    logger = logging.getLogger("panorama_app")
    # Found by name, not class: a runner that re-executes the application may have reloaded this module.
    if not any(handler.get_name() == _CONSOLE_HANDLER for handler in logger.handlers):
        handler = _ConsoleHandler(sys.stderr)
        handler.set_name(_CONSOLE_HANDLER)
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
        logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    return logger


class ParameterError(ValueError):
    """A graph parameter has a value the application cannot use."""


@dataclass(frozen=True)
class Parameters:
    """The code node's inputs (graph value nodes), read once at start and checked."""

    threshold: float
    classes_of_interest: tuple[str, ...]
    log_level: str
    device_id: str
    region: str
    metrics_namespace: str
    metrics_interval: float
    task: str
    class_names: tuple[str, ...]
    input_shape: tuple[int, ...]
    input_layout: str
    input_name: str
    input_scaling: str = "imagenet"

    @classmethod
    def from_node(cls, node: Any) -> Parameters:
        """Read every parameter input of the SDK node (``node.inputs.<name>.get()``)."""

        def get(name: str) -> Any:
            return getattr(node.inputs, name).get()

        def words(text: Any) -> tuple[str, ...]:
            return tuple(w.strip() for w in str(text).split(",") if w.strip())

        try:
            shape = tuple(int(d) for d in words(get("input_shape")))
        except ValueError:
            raise ParameterError(
                f"parameter input_shape = {get('input_shape')!r}: must be integers like 1,3,512,512"
            ) from None
        parameters = cls(
            threshold=float(get("threshold")),
            classes_of_interest=words(get("classes_of_interest")),
            log_level=str(get("log_level")).upper(),
            device_id=str(get("device_id")),
            region=str(get("region")),
            metrics_namespace=str(get("metrics_namespace")),
            metrics_interval=float(get("metrics_interval")),
            task=str(get("task")),
            class_names=words(get("class_names")),
            input_shape=shape,
            input_layout=str(get("input_layout")).upper(),
            input_name=str(get("input_name")),
            # graphs made before the parameter existed: what the application always did
            input_scaling=str(get("input_scaling")) if hasattr(node.inputs, "input_scaling") else "imagenet",
        )
        parameters.check()
        return parameters

    def check(self) -> None:
        """Raise :class:`ParameterError` naming the parameter, its value and the rule."""
        rules: list[tuple[str, Any, bool, str]] = [
            ("threshold", self.threshold, 0 < self.threshold <= 1, "must be in (0, 1]"),
            ("log_level", self.log_level, self.log_level in LOG_LEVELS, f"must be one of {', '.join(LOG_LEVELS)}"),
            ("task", self.task, self.task in TASKS, f"must be one of {', '.join(TASKS)}"),
            ("class_names", self.class_names, bool(self.class_names), "must list the model's classes"),
            ("input_shape", self.input_shape, len(self.input_shape) == 4, "must have 4 dimensions"),
            ("input_layout", self.input_layout, self.input_layout in ("NCHW", "NHWC"), "must be NCHW or NHWC"),
            ("metrics_interval", self.metrics_interval, self.metrics_interval >= 1, "must be at least 1 second"),
            ("input_name", self.input_name, bool(self.input_name), "must not be empty"),
            (
                "input_scaling",
                self.input_scaling,
                self.input_scaling in SCALINGS,
                f"must be one of {', '.join(SCALINGS)}",
            ),
            (
                "input_name",
                self.input_name,
                re.fullmatch(INPUT_NAME_PATTERN, self.input_name) is not None,
                f"must be a tensor name matching {INPUT_NAME_PATTERN}",
            ),
        ]
        unknown = sorted(set(self.classes_of_interest) - set(self.class_names))
        rules.append(("classes_of_interest", self.classes_of_interest, not unknown, f"unknown classes {unknown}"))
        for name, value, ok, rule in rules:
            if not ok:
                raise ParameterError(f"parameter {name} = {value!r}: {rule}")


def draw_detections(stream: Any, detections: Detections, class_names: tuple[str, ...]) -> None:
    """Boxes and labels on the output stream (SDK coordinates are 0–1)."""
    for class_id, score, (x1, y1, x2, y2) in zip(
        detections.class_ids.tolist(), detections.scores.tolist(), detections.boxes.tolist()
    ):
        stream.add_rect(x1, y1, x2, y2)
        name = class_names[class_id] if class_id < len(class_names) else str(class_id)
        stream.add_label(f"{name} {score:.0%}", x1, max(0.0, y1 - 0.02))


class Application:
    """Per frame: preprocess → model → postprocess → draw → count; one bad frame never stops it."""

    def __init__(
        self,
        node: Any,
        parameters: Parameters,
        *,
        metrics: MetricsPublisher | None = None,
        model_node: str = "model_node",
    ) -> None:
        self.node = node
        self.parameters = parameters
        self.metrics = metrics
        self.model_node = model_node
        mean, std = SCALINGS[parameters.input_scaling]
        self.preprocess = Preprocessor(parameters.input_shape, parameters.input_layout, mean=mean, std=std)
        self.keep = class_filter(parameters.class_names, parameters.classes_of_interest)
        self.counted = parameters.classes_of_interest or parameters.class_names
        self.frames = 0
        self.errors = 0
        self.cached = 0  # stream frames skipped: the SDK gave the previous frame again
        LOG.setLevel(parameters.log_level)

    @classmethod
    def from_node(cls, node: Any, client_factory: Callable[[], Any] | None = None) -> Application:
        """Read the parameters from the SDK node and start the metrics publisher."""
        parameters = Parameters.from_node(node)
        metrics = MetricsPublisher(
            parameters.metrics_namespace,
            parameters.device_id,
            parameters.metrics_interval,
            client_factory or cloudwatch_factory(parameters.region),
        )
        return cls(node, parameters, metrics=metrics)

    def process_stream(self, stream: Any) -> None:
        """Analyse one stream's current frame and annotate it."""
        tensor, geometry = self.preprocess(stream.image)
        params = self.parameters
        result = self.node.call({params.input_name: tensor}, self.model_node)
        if result is None:
            raise RuntimeError(f"model node {self.model_node} returned no outputs")
        outputs = tuple(result)  # the SDK's result is a sequence, not always a tuple: index a tuple
        if params.task == "object_detection":
            detections = decode_ssd(outputs, threshold=params.threshold, keep=self.keep, geometry=geometry)
            draw_detections(stream, detections, params.class_names)
            counts = count_by_class(detections, params.class_names)
            counts = {name: counts.get(name, 0) for name in self.counted}
        else:
            best = top_k(outputs[0], TOP_K)
            counts = {name: 0 for name in self.counted}
            for rank, (index, probability) in enumerate(best):
                name = params.class_names[index] if index < len(params.class_names) else str(index)
                stream.add_label(f"{name} {probability:.0%}", 0.02, 0.1 + 0.05 * rank)
                if rank == 0 and probability >= params.threshold and name in counts:
                    counts[name] = 1
        stream.add_label(", ".join(f"{n}: {c}" for n, c in counts.items()), 0.02, 0.04)
        if self.metrics is not None:
            self.metrics.record(str(getattr(stream, "stream_id", "stream")), counts)

    def process_frame(self) -> None:
        """Take every stream's frame, analyse each new one (errors logged per stream), pass them all on.

        A stream whose frame ``is_cached`` (SDK 1.1+; when some streams of a batch have no new frame)
        holds the frame already analysed and counted: it is passed on as it is, not inferred on again.
        """
        streams = self.node.inputs.video_in.get()
        for stream in streams:
            if getattr(stream, "is_cached", False):  # SDK 1.0 media have no such attribute
                self.cached += 1
                continue
            try:
                self.process_stream(stream)
            except Exception:
                self.errors += 1
                LOG.exception("frame of stream %s failed", getattr(stream, "stream_id", "?"))
        self.node.outputs.video_out.put(streams)
        self.frames += 1

    def run(self, max_frames: int | None = None) -> None:
        """The video loop (forever on the device; ``max_frames`` in tests)."""
        LOG.info(
            "starting: %s, %s classes, threshold %.2f",
            self.parameters.task,
            len(self.parameters.class_names),
            self.parameters.threshold,
        )
        try:
            while max_frames is None or self.frames < max_frames:
                self.process_frame()
        finally:
            if self.metrics is not None:
                self.metrics.close()
