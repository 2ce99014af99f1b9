"""Frame preprocessing and SSD / classification postprocessing, against plain reference code."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from panorama_app.postprocess import class_filter, count_by_class, decode_ssd, top_k
from panorama_app.preprocess import MEAN, STD, Letterbox, Preprocessor
from tests.panorama_app.fakes import ssd_outputs

RNG = np.random.default_rng(7)


def _frame(height: int, width: int) -> np.ndarray:
    return RNG.integers(0, 256, (height, width, 3), dtype=np.uint8)


def _reference(frame: np.ndarray, width: int, height: int) -> np.ndarray:
    """Straightforward float pipeline: resize, BGR→RGB, /255, (x - mean) / std, HWC."""
    resized = cv2.resize(frame, (width, height), interpolation=cv2.INTER_LINEAR)
    rgb = resized[:, :, ::-1].astype(np.float32) / 255.0
    return (rgb - np.array(MEAN, np.float32)) / np.array(STD, np.float32)


@pytest.mark.parametrize(
    ("height", "width", "expected"),
    [
        (1080, 1920, (512, 288, 0, 112)),  # landscape: bars top and bottom
        (1920, 1080, (288, 512, 112, 0)),  # portrait: bars left and right
        (480, 640, (512, 384, 0, 64)),
        (300, 300, (512, 512, 0, 0)),  # smaller than the input: scaled up
        (721, 1279, (512, 289, 0, 111)),  # odd sizes
    ],
)
def test_letterbox_geometry_and_values(height: int, width: int, expected: tuple[int, int, int, int]) -> None:
    pre = Preprocessor((1, 3, 512, 512))
    frame = _frame(height, width)
    tensor, geometry = pre(frame)
    assert (geometry.width, geometry.height, geometry.pad_x, geometry.pad_y) == expected
    assert tensor.shape == (1, 3, 512, 512) and tensor.dtype == np.float32
    inside = tensor[
        0, :, geometry.pad_y : geometry.pad_y + geometry.height, geometry.pad_x : geometry.pad_x + geometry.width
    ]
    np.testing.assert_allclose(inside.transpose(1, 2, 0), _reference(frame, geometry.width, geometry.height), atol=1e-5)
    pad = np.array([(0 - m) / s for m, s in zip(MEAN, STD, strict=True)], np.float32)
    if geometry.pad_y:
        np.testing.assert_allclose(tensor[0, :, 0, 0], pad, atol=1e-6)
        np.testing.assert_allclose(tensor[0, :, -1, -1], pad, atol=1e-6)


def test_nhwc_layout_and_stretch_mode() -> None:
    pre = Preprocessor((1, 224, 224, 3), "NHWC", letterbox=False)
    frame = _frame(480, 640)
    tensor, geometry = pre(frame)
    assert tensor.shape == (1, 224, 224, 3)
    assert (geometry.pad_x, geometry.pad_y, geometry.width, geometry.height) == (0, 0, 224, 224)
    np.testing.assert_allclose(tensor[0], _reference(frame, 224, 224), atol=1e-5)


def test_buffer_is_reused_and_padding_rewritten_when_the_geometry_changes() -> None:
    pre = Preprocessor((1, 3, 64, 64))
    first, _ = pre(_frame(32, 64))
    second, geometry = pre(_frame(64, 32))  # bars move from top/bottom to left/right
    assert first is second
    np.testing.assert_allclose(second[0, :, 0, 0], [(0 - m) / s for m, s in zip(MEAN, STD, strict=True)], atol=1e-6)
    assert (geometry.pad_x, geometry.pad_y) == (16, 0)


def test_bad_inputs_are_rejected_clearly() -> None:
    with pytest.raises(ValueError, match="need 4 dims and NCHW or NHWC"):
        Preprocessor((3, 512, 512))
    with pytest.raises(ValueError, match="the model takes 1"):
        Preprocessor((1, 1, 28, 28))
    with pytest.raises(ValueError, match="expected a BGR uint8 frame"):
        Preprocessor((1, 3, 64, 64))(np.zeros((64, 64), np.uint8))


GEOMETRY = Letterbox(512 / 1920, 288 / 1080, 0, 112, 512, 288, 1920, 1080)
NAMES = ("car", "person")


def test_ssd_filtering_threshold_classes_and_empty_rows() -> None:
    outputs = ssd_outputs(
        [
            (1, 0.9, (0, 112, 256, 256)),  # person, kept
            (1, 0.3, (0, 112, 256, 256)),  # below threshold
            (0, 0.95, (10, 120, 20, 130)),  # car, not of interest
            (7, 0.99, (10, 120, 20, 130)),  # class id out of range
        ]
    )
    detections = decode_ssd(outputs, threshold=0.5, keep=class_filter(NAMES, ("person",)), geometry=GEOMETRY)
    assert detections.class_ids.tolist() == [1]
    np.testing.assert_allclose(detections.boxes[0], [0.0, 0.0, 0.5, 0.5], atol=1e-6)
    everything = decode_ssd(outputs, threshold=0.5, keep=None, geometry=GEOMETRY)
    assert everything.class_ids.tolist() == [1, 0, 7]


def test_boxes_outside_the_picture_are_clipped() -> None:
    outputs = ssd_outputs([(1, 0.8, (-40, 0, 600, 512))])  # into the letterbox bars and beyond
    (box,) = decode_ssd(outputs, threshold=0.5, keep=None, geometry=GEOMETRY).boxes
    assert box.tolist() == [0.0, 0.0, 1.0, 1.0]


def test_empty_outputs_give_no_detections_and_zero_counts() -> None:
    detections = decode_ssd(ssd_outputs([]), threshold=0.1, keep=None, geometry=GEOMETRY)
    assert len(detections) == 0
    assert count_by_class(detections, NAMES) == {"car": 0, "person": 0}


def test_counts_per_class() -> None:
    rows: list[tuple[float, float, tuple[float, float, float, float]]] = [(1, 0.9, (0, 112, 10, 122))] * 3
    rows.append((0, 0.9, (0, 112, 10, 122)))
    detections = decode_ssd(ssd_outputs(rows), threshold=0.5, keep=None, geometry=GEOMETRY)
    assert count_by_class(detections, NAMES) == {"car": 1, "person": 3}


def test_top_k_of_probabilities_and_of_logits() -> None:
    (first, second) = top_k(np.array([[0.1, 0.7, 0.2]]), 2)
    assert first[0] == 1 and first[1] == pytest.approx(0.7)
    assert second[0] == 2 and second[1] == pytest.approx(0.2)
    logits = np.array([[2.0, -1.0, 0.5]])
    best = top_k(logits, 3)
    assert [i for i, _ in best] == [0, 2, 1]
    assert sum(p for _, p in best) == pytest.approx(1.0)
    assert len(top_k(np.array([0.5, 0.5]), 5)) == 2  # k larger than the classes
