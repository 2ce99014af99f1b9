"""Measure whole-app synth vs. an empty-stack app, and the full test suite (median of N runs).

Run with `make bench` (N=3). Prints a table and writes benchmarks/results/latest.json. Numbers are
wall-clock seconds on this machine; nothing here is asserted anywhere.
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
RUNS = int(os.environ.get("BENCH_RUNS", "3"))


def _env(outdir: str, validation: bool) -> dict[str, str]:
    env = dict(os.environ)
    env["CDK_OUTDIR"] = outdir
    # aws-cdk-lib 2.275 validates every template at synth with a WASM engine (1.5-2.5 s here);
    # measuring with and without it separates CDK's fixed cost from what our stacks add.
    env["CDK_VALIDATION"] = "true" if validation else "false"
    env["CDK_CONTEXT_JSON"] = json.dumps(json.loads((ROOT / "cdk.json").read_text())["context"])
    return env


def _time(command: list[str], env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def _synth(script: str, validation: bool = True) -> float:
    with tempfile.TemporaryDirectory() as outdir:
        return _time([sys.executable, script], _env(outdir, validation))


def main() -> None:
    whole, empty, role, suite = [], [], [], []
    whole_nv, empty_nv = [], []
    for _ in range(RUNS):  # interleaved, so drift on the machine hits all sides alike
        whole.append(_synth("app.py"))
        empty.append(_synth("benchmarks/empty_app.py"))
        role.append(_synth("benchmarks/one_role_app.py"))
        whole_nv.append(_synth("app.py", validation=False))
        empty_nv.append(_synth("benchmarks/empty_app.py", validation=False))
    for _ in range(RUNS):
        suite.append(_time([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]))
    result = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "node": subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip(),
        "runs": RUNS,
        "synth_whole_app_s": round(statistics.median(whole), 2),
        "synth_empty_stack_app_s": round(statistics.median(empty), 2),
        "ratio_whole_to_empty": round(statistics.median(whole) / statistics.median(empty), 2),
        "synth_one_role_app_s": round(statistics.median(role), 2),
        "ratio_whole_to_one_role": round(statistics.median(whole) / statistics.median(role), 2),
        "synth_whole_app_no_validation_s": round(statistics.median(whole_nv), 2),
        "synth_empty_stack_app_no_validation_s": round(statistics.median(empty_nv), 2),
        "ratio_whole_to_empty_no_validation": round(statistics.median(whole_nv) / statistics.median(empty_nv), 2),
        "test_suite_s": round(statistics.median(suite), 2),
        "suite_in_synths": round(statistics.median(suite) / statistics.median(whole), 1),
        "samples": {
            "whole": whole,
            "empty": empty,
            "one_role": role,
            "whole_no_validation": whole_nv,
            "empty_no_validation": empty_nv,
            "suite": suite,
        },
    }
    out = ROOT / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    (out / "latest.json").write_text(json.dumps(result, indent=2) + "\n")
    for key, value in result.items():
        if key != "samples":
            print(f"{key:>38}: {value}")


if __name__ == "__main__":
    main()
