"""Measure what the delivery stack costs at synth: ``python app.py`` with and without a delivery file.

Run with ``make bench-delivery`` (median of ``BENCH_RUNS``, default 5, interleaved). Compares, as
``cdk synth`` runs the app (a fresh interpreter each, without the CLI's own Node start-up):
- the default app: one environment (config/dev.yaml);
- the delivery app (config/delivery.example.yaml): the pipeline and its two environments;
- those two environments as plain stages without the pipeline (benchmarks/delivery_environments_app.py),
  so that the pipeline stack's own share is visible.
Writes benchmarks/results/delivery_synth.json; nothing here is asserted anywhere.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNS = int(os.environ.get("BENCH_RUNS", "5"))
DELIVERY = "config/delivery.example.yaml"


def _synth(script: str, **context: str) -> float:
    with tempfile.TemporaryDirectory() as outdir:
        env = dict(os.environ)
        env["CDK_OUTDIR"] = outdir
        env["CDK_CONTEXT_JSON"] = json.dumps({**json.loads((ROOT / "cdk.json").read_text())["context"], **context})
        start = time.perf_counter()
        subprocess.run([sys.executable, script], cwd=ROOT, env=env, check=True, capture_output=True)
        return time.perf_counter() - start


def main() -> None:
    samples: dict[str, list[float]] = {"default": [], "delivery": [], "environments": []}
    for _ in range(RUNS):
        samples["default"].append(_synth("app.py"))
        samples["delivery"].append(_synth("app.py", delivery=DELIVERY))
        samples["environments"].append(_synth("benchmarks/delivery_environments_app.py", delivery=DELIVERY))
    median = {k: statistics.median(v) for k, v in samples.items()}
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "runs": RUNS,
        "synth_default_app_s": round(median["default"], 2),
        "synth_delivery_app_s": round(median["delivery"], 2),
        "synth_delivery_environments_without_pipeline_s": round(median["environments"], 2),
        "ratio_delivery_to_default": round(median["delivery"] / median["default"], 2),
        "ratio_delivery_to_its_environments": round(median["delivery"] / median["environments"], 2),
        "samples": samples,
    }
    out = ROOT / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    (out / "delivery_synth.json").write_text(json.dumps(result, indent=2) + "\n")
    for key, value in result.items():
        if key != "samples":
            print(f"{key:>48}: {value}")


if __name__ == "__main__":
    main()
