"""Per-frame pre- and postprocessing cost of the on-device application vs. the AWS sample's way.

A 1920x1080 BGR frame to a [1,3,512,512] input, and 100 SSD detections. The baseline re-implements
the AWS Panorama sample application's preprocessing faithfully (for this comparison only):
cv2.resize to 512x512, astype(float32) / 255, split the channels, (channel - mean) / std each, and
put them back into a new (1,3,512,512) array. Run by hand: `make bench-app`.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from panorama_app.postprocess import class_filter, count_by_class, decode_ssd
from panorama_app.preprocess import MEAN, STD, Preprocessor

FRAMES = int(os.environ.get("BENCH_FRAMES", "300"))
WARMUP = 20
NAMES = tuple(f"class_{i}" for i in range(20))  # VOC: 20 classes, person = 14


def baseline_preprocess(frame: np.ndarray, size: int = 512) -> np.ndarray:
    """The sample application's preprocessing, as it is written there."""
    resized = cv2.resize(frame, (size, size))
    image = resized.astype(np.float32) / 255.0
    channels = [image[:, :, 0], image[:, :, 1], image[:, :, 2]]
    normalized = [(channel - MEAN[i]) / STD[i] for i, channel in enumerate(channels)]
    return np.asarray([normalized])


def _ssd_outputs(rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    ids = rng.integers(-1, 20, (1, 100, 1)).astype(np.float32)
    scores = rng.random((1, 100, 1), dtype=np.float32)
    corners = rng.random((1, 100, 2), dtype=np.float32) * 400
    boxes = np.concatenate([corners, corners + 100], axis=2)
    return ids, scores, boxes


def _time(step: Callable[[], object]) -> list[float]:
    for _ in range(WARMUP):
        step()
    samples = []
    for _ in range(FRAMES):
        start = time.perf_counter()
        step()
        samples.append((time.perf_counter() - start) * 1000)
    return samples


def _summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"median_ms": round(statistics.median(ordered), 3), "p90_ms": round(ordered[int(0.9 * len(ordered))], 3)}


def main() -> None:
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 256, (1080, 1920, 3), dtype=np.uint8)
    outputs = _ssd_outputs(rng)
    preprocess = Preprocessor((1, 3, 512, 512))
    _, geometry = preprocess(frame)
    keep = class_filter(NAMES, ("class_14",))

    def post() -> object:
        return count_by_class(decode_ssd(outputs, threshold=0.5, keep=keep, geometry=geometry), NAMES)

    def both() -> object:
        _, g = preprocess(frame)
        return count_by_class(decode_ssd(outputs, threshold=0.5, keep=keep, geometry=g), NAMES)

    results = {
        "baseline_preprocess": _summary(_time(lambda: baseline_preprocess(frame))),
        "preprocess": _summary(_time(lambda: preprocess(frame))),
        "postprocess": _summary(_time(post)),
        "preprocess_plus_postprocess": _summary(_time(both)),
    }
    speedup = results["baseline_preprocess"]["median_ms"] / results["preprocess"]["median_ms"]
    report = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "numpy": np.__version__,
        "opencv": cv2.__version__,
        "frames": FRAMES,
        "results": results,
        "preprocess_speedup": round(speedup, 1),
    }
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    (out / "preprocess_postprocess.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"{'step':<30}{'median ms':>12}{'p90 ms':>10}")
    for name, summary in results.items():
        print(f"{name:<30}{summary['median_ms']:>12.3f}{summary['p90_ms']:>10.3f}")
    print(f"preprocessing speed-up vs baseline: {speedup:.1f}x")


if __name__ == "__main__":
    main()
