"""A local AWS with the pipeline deployed, for the fleet and concurrency benchmarks (not the test suite).

The emulator runs in this process (no local appliance: devices report RUNNING once deployed, so
what is measured is the pipeline, not the model server); the real CDK CLI deploys ``config/dev.yaml``
with the given overrides, and ``panopipe package-app`` registers the code package, as ``make local``.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from local_aws.emulator import Emulator  # noqa: E402
from local_aws.panorama_backend import PanoramaBackend  # noqa: E402
from panopipe import local_mode, runs  # noqa: E402
from panopipe.config import load_config  # noqa: E402

CONFIG = ROOT / "config" / "dev.yaml"
REGION = "us-east-1"
RESULTS = ROOT / "benchmarks" / "results"


@dataclass
class Local:
    """The running local AWS and the deployed environment."""

    aws: Emulator
    target: runs.Target
    config_path: Path

    @property
    def artifacts_bucket(self) -> str:
        return self.target.data_bucket.replace("-data-", "-artifacts-")


def write_config(path: Path, overrides: dict[str, Any]) -> None:
    """``config/dev.yaml`` with top-level sections replaced or merged (``runs`` is merged)."""
    document = yaml.safe_load(CONFIG.read_text())
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(document.get(key), dict):
            document[key] = {**document[key], **value}
        else:
            document[key] = value
    path.write_text(yaml.safe_dump(document, sort_keys=False))


@contextmanager
def local_pipeline(devices: list[str], overrides: dict[str, Any]) -> Iterator[Local]:
    """The local AWS with ``devices`` (emulator specs) and the pipeline deployed with ``overrides``."""
    from typer.testing import CliRunner

    from panopipe.cli import app

    saved = dict(os.environ)
    with tempfile.TemporaryDirectory() as folder:
        config_path = Path(folder) / "bench.yaml"
        write_config(config_path, overrides)
        panorama = PanoramaBackend(devices=devices)
        with Emulator(panorama=panorama, lambda_cache_dir=Path(folder) / "lambda") as aws:
            try:
                os.environ.update(aws.env())
                local_mode.deploy(aws.endpoint, REGION, config_path, poll_seconds=1, say=lambda _: None)
                packaged = CliRunner().invoke(app, ["package-app", "--config", str(config_path)])
                assert packaged.exit_code == 0, packaged.output
                config = load_config(config_path, base_dir=ROOT)
                yield Local(aws, runs.find_target(config), config_path)
            finally:
                os.environ.clear()
                os.environ.update(saved)


def train(target: runs.Target, name: str) -> str:
    """Upload the sample data set as ``name`` (its marker starts the run); the run's ARN."""
    version = runs.upload_dataset(target, ROOT / "panopipe" / "samples" / "dataset", name)
    uri = f"s3://{target.data_bucket}/datasets/{name}/"
    # the trigger names the run after the marker's version: starting it again finds that run
    return runs.start(target, {"dataset": uri}, runs.dataset_run_name(target, name, version))


def wait(target: runs.Target, arn: str, timeout: float = 1800) -> runs.Progress:
    """The run once it has ended (or its progress at ``timeout``)."""
    *_, last = runs.follow(target, arn, interval=1, timeout=timeout)
    return last


@dataclass
class Counted:
    """What one execution cost: its wall time, Lambda invocations, states entered, largest state."""

    seconds: float
    invocations: int
    transitions: int
    largest_state_bytes: int


def counted(arn: str) -> Counted:
    """From the execution's history (moto's GetExecutionHistory answers it whole)."""
    sfn = boto3.client("stepfunctions", region_name=REGION)
    described = sfn.describe_execution(executionArn=arn)
    pages = sfn.get_paginator("get_execution_history").paginate(executionArn=arn)
    events = [event for page in pages for event in page["events"]]
    invocations = sum(e["type"] in ("LambdaFunctionScheduled", "TaskScheduled") for e in events)
    transitions = sum(e["type"].endswith("StateEntered") for e in events)
    largest = 0
    for event in events:
        for details in event.values():
            if isinstance(details, dict):
                for field in ("input", "output"):
                    if isinstance(details.get(field), str):
                        largest = max(largest, len(details[field].encode()))
    seconds = (described["stopDate"] - described["startDate"]).total_seconds()
    return Counted(seconds, invocations, transitions, largest)


def save(name: str, results: Any) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(results, indent=1, default=str))
    return path


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")
