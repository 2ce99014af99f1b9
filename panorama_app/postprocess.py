"""Model outputs → what the application shows and counts (vectorized: no loop over detections)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from panorama_app.preprocess import Letterbox


@dataclass(frozen=True)
class Detections:
    """Kept detections: class index, score, and box in 0–1 frame coordinates (xmin, ymin, xmax, ymax)."""

    class_ids: npt.NDArray[np.int64]
    scores: npt.NDArray[np.float32]
    boxes: npt.NDArray[np.float32]

    def __len__(self) -> int:
        return int(self.class_ids.shape[0])


def class_filter(class_names: tuple[str, ...], of_interest: tuple[str, ...]) -> npt.NDArray[np.bool_] | None:
    """A boolean table over class indices, or None to keep every class."""
    if not of_interest:
        return None
    return np.array([name in of_interest for name in class_names], dtype=bool)


def decode_ssd(
    outputs: tuple[npt.NDArray[np.floating], ...],
    *,
    threshold: float,
    keep: npt.NDArray[np.bool_] | None,
    geometry: Letterbox,
) -> Detections:
    """SSD outputs → detections above ``threshold`` in the kept classes, boxes mapped to the frame.

    Outputs: class ids (1,N,1) with -1 for empty rows, scores (1,N,1), boxes (1,N,4) in input pixels.
    """
    ids = outputs[0].reshape(-1)
    scores = outputs[1].reshape(-1).astype(np.float32, copy=False)
    boxes = outputs[2].reshape(-1, 4)
    mask = (ids >= 0) & (scores >= threshold)
    class_ids = ids.astype(np.int64)
    if keep is not None:
        known = (class_ids >= 0) & (class_ids < keep.shape[0])
        mask &= known
        mask[known] &= keep[class_ids[known]]
    return Detections(class_ids[mask], scores[mask], geometry.to_frame(boxes[mask]))


def count_by_class(detections: Detections, class_names: tuple[str, ...]) -> dict[str, int]:
    """Objects per class name (every class of interest appears, with 0 when absent)."""
    counts = np.bincount(detections.class_ids[detections.class_ids < len(class_names)], minlength=len(class_names))
    return {name: int(count) for name, count in zip(class_names, counts)}


def top_k(output: npt.NDArray[np.floating], k: int) -> list[tuple[int, float]]:
    """(class index, probability) of the k best classes; logits are turned into probabilities."""
    values = output.reshape(-1).astype(np.float64)
    if values.min() < 0 or not np.isclose(values.sum(), 1.0, atol=1e-3):
        exp = np.exp(values - values.max())
        values = exp / exp.sum()
    k = min(k, values.shape[0])
    best = np.argpartition(-values, k - 1)[:k]
    best = best[np.argsort(-values[best])]
    return [(int(i), float(values[i])) for i in best]
