"""Cold import time of each step handler module, relative to ``import boto3`` alone.

A Lambda cold start imports the handler module once; everything it imports beyond boto3 (which
the runtime's own code path loads anyway) is added latency on every cold start. Each sample is a
fresh interpreter (``python -c``), interleaved across modules so machine drift hits all alike;
the median of ``BENCH_RUNS`` (default 7) is reported. Run with ``make bench-pipeline``.

The functions have active tracing: the first traced invocation builds Powertools' ``Tracer``
(``lambda_handlers.step.tracer``), which imports the X-Ray SDK and patches botocore. That one-off
cost is printed on its own line (measured with ``AWS_LAMBDA_FUNCTION_NAME`` set, as in Lambda).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNS = int(os.environ.get("BENCH_RUNS", "7"))
MODULES = (
    "validate_input",
    "preparation",
    "training",
    "compilation",
    "deployment_lock",
    "package_registration",
    "fleet",
    "deployment",
    "rollback",
    "notify",
    "trigger",
    "manifest_template",
)
#: The handler module and what it imports on its first event (boto3 for every client; Powertools'
#: event data classes for the two functions that read EventBridge / CloudFormation events).
_PROBE = "import time; t = time.perf_counter(); import {target}; print(time.perf_counter() - t)"
_FIRST_EVENT = {
    "trigger": ", aws_lambda_powertools.utilities.data_classes",
    "manifest_template": ", aws_lambda_powertools.utilities.data_classes",
}
_TRACER = (
    "import lambda_handlers.step as s, boto3, time; t = time.perf_counter(); s.tracer(); print(time.perf_counter() - t)"
)


def _sample(probe: str) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_LAMBDA_", "POWERTOOLS_"))}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # measured with bytecode cached (the first round writes it)
    env.update(AWS_LAMBDA_FUNCTION_NAME="bench", POWERTOOLS_SERVICE_NAME="bench", AWS_REGION="us-east-1")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


def main() -> None:
    targets = ["boto3", *(f"lambda_handlers.{m}" for m in MODULES)]
    samples: dict[str, list[float]] = {t: [] for t in [*targets, "tracer"]}
    for _ in range(RUNS):
        for target in targets:
            extra = "" if target == "boto3" else ", boto3" + _FIRST_EVENT.get(target.rsplit(".", 1)[-1], "")
            samples[target].append(_sample(_PROBE.format(target=target + extra)))
        samples["tracer"].append(_sample(_TRACER))
    base = statistics.median(samples["boto3"])
    print(f"{'module':<38}{'median ms':>10}{'x boto3':>9}")
    for target in targets:
        median = statistics.median(samples[target])
        print(f"{target:<38}{median * 1000:>10.1f}{median / base:>9.2f}")
    tracer = statistics.median(samples["tracer"])
    print(f"first traced invocation: building the Tracer {tracer * 1000:.1f} ms (once per cold start)")


if __name__ == "__main__":
    main()
