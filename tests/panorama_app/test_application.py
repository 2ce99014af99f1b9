"""The application loop with a stand-in SDK node, and the CloudWatch publisher (botocore Stubber)."""

from __future__ import annotations

import threading
from typing import Any

import boto3
import numpy as np
import pytest
from botocore.stub import Stubber

from panorama_app.application import Application, ParameterError, Parameters
from panorama_app.metrics import MetricsPublisher
from tests.panorama_app.fakes import Node, Stream, ssd_outputs


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _stubbed_cloudwatch() -> tuple[Any, Stubber]:
    client = boto3.client("cloudwatch", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    return client, Stubber(client)


def _frames(count: int = 2) -> list[Stream]:
    return [Stream(np.zeros((1080, 1920, 3), np.uint8), stream_id=f"camera_{i}") for i in range(count)]


def test_loop_detects_draws_counts_and_passes_frames_on() -> None:
    person = ssd_outputs([(1, 0.9, (0, 112, 256, 256)), (0, 0.9, (0, 112, 20, 130))])
    streams = _frames()
    node = Node(lambda inputs: person, lambda: streams)
    recorded: list[tuple[str, dict[str, int]]] = []
    app = Application(node, Parameters.from_node(node))
    app.metrics = type(
        "Recorder", (), {"record": lambda self, s, c: recorded.append((s, c)), "close": lambda self: None}
    )()
    app.run(max_frames=3)
    assert app.frames == 3 and app.errors == 0
    assert node.outputs.video_out.sent == [streams] * 3
    (inputs, model_node) = node.calls[0]
    assert model_node == "model_node" and inputs["data"].shape == (1, 3, 512, 512)
    assert streams[0].rects[0] == pytest.approx((0.0, 0.0, 0.5, 0.5))
    assert ("person: 1", 0.02, 0.04) in streams[0].labels
    assert recorded[0] == ("camera_0", {"person": 1})


def test_a_failing_model_call_is_logged_and_the_loop_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    calls = {"n": 0}

    def flaky(inputs: dict[str, np.ndarray]) -> tuple[np.ndarray, ...]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("inference engine busy")
        return ssd_outputs([])

    streams = _frames(1)
    node = Node(flaky, lambda: streams)
    app = Application(node, Parameters.from_node(node))
    app.run(max_frames=3)
    assert app.frames == 3 and app.errors == 1
    assert "frame of stream camera_0 failed" in caplog.text
    assert len(node.outputs.video_out.sent) == 3


def test_classification_labels_the_top_classes() -> None:
    streams = _frames(1)
    node = Node(
        lambda i: (np.array([[0.1, 0.8, 0.1]]),),
        lambda: streams,
        task="image_classification",
        class_names="empty,person,dog",
        classes_of_interest="",
        input_shape="1,3,224,224",
    )
    Application(node, Parameters.from_node(node)).run(max_frames=1)
    assert streams[0].labels[0] == ("person 80%", 0.02, 0.1)
    assert ("empty: 0, person: 1, dog: 0", 0.02, 0.04) in streams[0].labels


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("threshold", 1.5, "parameter threshold = 1.5: must be in (0, 1]"),
        ("task", "segmentation", "parameter task = 'segmentation': must be one of"),
        ("input_shape", "1,3,x,512", "parameter input_shape = '1,3,x,512': must be integers"),
        ("classes_of_interest", "dog", "parameter classes_of_interest = ('dog',): unknown classes ['dog']"),
        ("input_layout", "CHW", "parameter input_layout = 'CHW': must be NCHW or NHWC"),
        ("input_scaling", "zscore", "parameter input_scaling = 'zscore': must be one of imagenet, raw"),
    ],
)
def test_bad_parameters_are_named(name: str, value: Any, message: str) -> None:
    node = Node(lambda i: (), lambda: [], **{name: value})
    with pytest.raises(ParameterError) as caught:
        Parameters.from_node(node)
    assert str(caught.value).startswith(message)


def test_metrics_are_published_at_most_once_per_interval_with_the_real_request_shape() -> None:
    client, stubber = _stubbed_cloudwatch()
    clock = Clock()
    publisher = MetricsPublisher("PanoramaPipeline/panopipe-dev", "device-1", 60, lambda: client, clock=clock)
    expected = {
        "Namespace": "PanoramaPipeline/panopipe-dev",
        "MetricData": [
            {
                "MetricName": "ObjectCount",
                "Dimensions": [
                    {"Name": "DeviceId", "Value": "device-1"},
                    {"Name": "StreamId", "Value": "camera_0"},
                    {"Name": "Class", "Value": "person"},
                ],
                "Value": 2.0,
                "Unit": "Count",
            }
        ],
    }
    stubber.add_response("put_metric_data", {}, expected)
    with stubber:
        publisher.record("camera_0", {"person": 2})  # first: sent
        for second in range(1, 60):
            clock.now = float(second)
            publisher.record("camera_0", {"person": 5})  # within the interval: kept, not sent
        assert publisher.flush()
        stubber.assert_no_pending_responses()
    assert publisher.published == 1
    publisher.close()


def test_a_hanging_or_failing_cloudwatch_never_blocks_the_loop() -> None:
    release = threading.Event()

    class Hanging:
        def put_metric_data(self, **kwargs: Any) -> None:
            release.wait(5)
            raise ConnectionError("no route to CloudWatch")

    clock = Clock()
    publisher = MetricsPublisher("ns", "device-1", 1, Hanging, clock=clock, queue_size=2)
    for second in range(50):  # 50 snapshots while the first call hangs: record() must return at once
        clock.now = float(second)
        publisher.record("camera_0", {"person": second})
    assert publisher.dropped >= 40
    release.set()
    assert publisher.flush()
    assert publisher.failures >= 1 and publisher.published == 0
    publisher.close()


def test_application_from_node_starts_the_publisher() -> None:
    client, stubber = _stubbed_cloudwatch()
    node = Node(lambda i: ssd_outputs([]), lambda: _frames(1))
    app = Application.from_node(node, client_factory=lambda: client)
    assert app.metrics is not None and app.metrics.namespace == "PanoramaPipeline/panopipe-dev"
    stubber.add_response("put_metric_data", {})
    with stubber:
        app.run(max_frames=1)


class _Recorder:
    def __init__(self) -> None:
        self.recorded: list[tuple[str, dict[str, int]]] = []

    def record(self, stream_id: str, counts: dict[str, int]) -> None:
        self.recorded.append((stream_id, counts))

    def close(self) -> None:
        pass


def test_cached_frames_are_passed_on_but_neither_inferred_on_nor_counted() -> None:
    fresh, cached = _frames(2)
    cached.is_cached = True  # the SDK gave this stream's previous frame again
    node = Node(lambda inputs: ssd_outputs([(1, 0.9, (0, 112, 256, 256))]), lambda: [fresh, cached])
    app = Application(node, Parameters.from_node(node))
    recorder = _Recorder()
    app.metrics = recorder  # type: ignore[assignment]
    app.run(max_frames=2)
    assert len(node.calls) == 2  # one model call per frame: the fresh stream's
    assert [stream for stream, _ in recorder.recorded] == ["camera_0", "camera_0"]
    assert cached.rects == [] and cached.labels == []
    assert node.outputs.video_out.sent == [[fresh, cached]] * 2  # still shown
    assert app.cached == 2 and app.errors == 0


def test_streams_without_is_cached_are_processed() -> None:
    """SDK 1.0 media (and the Test Utility's) have no is_cached attribute."""

    class Media:
        def __init__(self) -> None:
            self.image = np.zeros((480, 640, 3), np.uint8)
            self.labels: list[Any] = []

        def add_rect(self, *box: float) -> None:
            pass

        def add_label(self, text: str, x: float, y: float) -> None:
            self.labels.append(text)

    media = Media()
    node = Node(lambda inputs: ssd_outputs([]), lambda: [media])
    app = Application(node, Parameters.from_node(node))
    app.run(max_frames=1)
    assert len(node.calls) == 1 and app.errors == 0 and media.labels == ["person: 0"]


class _Outputs:
    """An SDK result that can be iterated but not indexed."""

    def __init__(self, arrays: tuple[np.ndarray, ...]) -> None:
        self.arrays = arrays

    def __iter__(self) -> Any:
        return iter(self.arrays)


@pytest.mark.parametrize("wrap", [_Outputs, lambda arrays: (a for a in arrays), list])
def test_model_outputs_of_any_sequence_type_are_decoded(wrap: Any) -> None:
    streams = _frames(1)
    node = Node(lambda inputs: wrap(ssd_outputs([(1, 0.9, (0, 112, 256, 256))])), lambda: streams)
    app = Application(node, Parameters.from_node(node))
    app.run(max_frames=1)
    assert app.errors == 0 and streams[0].rects == [pytest.approx((0.0, 0.0, 0.5, 0.5))]


def test_classification_outputs_of_any_sequence_type_are_decoded() -> None:
    streams = _frames(1)
    node = Node(
        lambda i: _Outputs((np.array([[0.1, 0.8, 0.1]]),)),
        lambda: streams,
        task="image_classification",
        class_names="empty,person,dog",
        classes_of_interest="",
        input_shape="1,3,224,224",
    )
    app = Application(node, Parameters.from_node(node))
    app.run(max_frames=1)
    assert app.errors == 0 and streams[0].labels[0] == ("person 80%", 0.02, 0.1)


def test_the_model_is_called_with_the_input_name_parameter() -> None:
    streams = _frames(1)
    node = Node(lambda inputs: ssd_outputs([]), lambda: streams, input_name="input0:0")
    app = Application(node, Parameters.from_node(node))
    assert app.parameters.input_name == "input0:0"
    app.run(max_frames=1)
    (inputs, _) = node.calls[0]
    assert list(inputs) == ["input0:0"] and app.errors == 0


@pytest.mark.parametrize("value", ["", "   ", "0data", "in put", "data-1", "data\n"])
def test_a_bad_input_name_is_named_with_its_rule(value: str) -> None:
    node = Node(lambda i: (), lambda: [], input_name=value)
    with pytest.raises(ParameterError) as caught:
        Parameters.from_node(node)
    rule = "must not be empty" if not value else "must be a tensor name matching ^[a-zA-Z_][a-zA-Z0-9_:.]*$"
    assert str(caught.value) == f"parameter input_name = {value!r}: {rule}"


@pytest.mark.parametrize(("scaling", "expected"), [("raw", 200.0), ("imagenet", (200 / 255 - 0.485) / 0.229)])
def test_the_model_gets_pixels_scaled_as_the_input_scaling_parameter_says(scaling: str, expected: float) -> None:
    """A built-in image-classification model takes raw 0-255 pixels (``bn_data`` normalizes); a script's ImageNet's."""
    streams = [Stream(np.full((64, 64, 3), 200, np.uint8))]
    node = Node(lambda inputs: ssd_outputs([]), lambda: streams, input_shape="1,3,32,32", input_scaling=scaling)
    app = Application(node, Parameters.from_node(node))
    app.run(max_frames=1)
    (inputs, _) = node.calls[0]
    assert float(inputs["data"][0, 0, 16, 16]) == pytest.approx(expected, abs=1e-4)


def test_a_graph_without_input_scaling_keeps_the_imagenet_scaling() -> None:
    node = Node(lambda i: (), lambda: [])
    assert Parameters.from_node(node).input_scaling == "imagenet"
