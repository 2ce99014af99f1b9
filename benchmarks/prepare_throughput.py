"""Throughput of the data preparation script (processing/prepare.py): images/s with and without variations.

A synthetic raw data set (2 classes, BENCH_IMAGES images each, 640x480 JPEG photos-like noise with
gradients) is prepared to 224x224 RecordIO: without variations, with each kind alone (1 variant),
and with the default (2 variants, all three kinds). Input images/s counts the raw images read
(decode + letterbox + split + variants + JPEG encode + write); output records/s what was written.
Median of BENCH_RUNS runs. Run by hand: `python benchmarks/prepare_throughput.py` (uses the Python
it is run with: the project venv, or the ML environment's numpy 1.23 for comparison).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import PIL
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from processing import prepare

IMAGES = int(os.environ.get("BENCH_IMAGES", "100"))
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
CASES = {
    "no variations": {"variations": 0},
    "lighting x1": {"variations": 1, "kinds": ("lighting",)},
    "skew x1": {"variations": 1, "kinds": ("skew",)},
    "lens x1": {"variations": 1, "kinds": ("lens",)},
    "default: all kinds x2": {"variations": 2},
}


def data_set(root: Path) -> None:
    rng = np.random.default_rng(0)
    ys, xs = np.mgrid[0:480, 0:640]
    for name in ("empty", "person"):
        (root / name).mkdir(parents=True)
        for i in range(IMAGES):
            base = ((xs * rng.uniform(0.1, 0.4) + ys * rng.uniform(0.1, 0.4)) % 256).astype(np.uint8)
            pixels = np.stack([base, base[::-1], base[:, ::-1]], axis=-1)
            pixels = np.clip(pixels + rng.integers(0, 40, pixels.shape), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.jpg", quality=90)


def main() -> None:
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch) / "raw"
        data_set(root)
        for case, changes in CASES.items():
            settings = prepare.Settings(classes=("empty", "person"), width=224, height=224, **changes)  # type: ignore[arg-type]
            seconds, records = [], 0
            for run in range(RUNS):
                started = time.perf_counter()
                report = prepare.prepare(root, Path(scratch) / f"out-{run}", settings)
                seconds.append(time.perf_counter() - started)
                document = report.document()
                records = document["train_records"] + document["validation_records"]
            median = statistics.median(seconds)
            results[case] = {
                "seconds": round(median, 3),
                "input_images_per_second": round(2 * IMAGES / median, 1),
                "output_records_per_second": round(records / median, 1),
                "records": records,
            }
            print(f"{case:24} {results[case]}")
    out = Path(__file__).resolve().parent / "results" / "prepare_throughput.json"
    out.write_text(
        json.dumps(
            {
                "python": platform.python_version(),
                "numpy": np.__version__,
                "pillow": PIL.__version__,
                "cpus": os.cpu_count(),
                "images": 2 * IMAGES,
                "size": "640x480 → 224x224",
                "results": results,
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
