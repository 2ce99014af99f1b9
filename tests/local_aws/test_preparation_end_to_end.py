"""A raw image data set end to end in the local AWS: the real CDK CLI's deployment, the real state machine,
the preparation Processing job running processing/prepare.py for real, then training on its channels;
and a data set the preparation rejects, which stops the run with the reason."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import boto3
import pytest

from lambda_handlers.domain import READY_MARKER
from local_aws.emulator import Emulator
from panopipe import runs
from tests.local_aws.test_end_to_end import _wait
from tests.local_aws.test_end_to_end import deployed as deployed  # the deployed stage (module scope)
from tests.test_prepare import data_set

__all__ = ["deployed"]
#: Deploys with the pinned CDK CLI (its own deployment, ~60 s: it could share test_end_to_end's).
pytestmark = pytest.mark.cli


def _upload_raw(target: runs.Target, folder: Path, name: str) -> str:
    """``<class>/`` folders, then the ``_READY`` marker (the trigger starts the run); the run's ARN."""
    s3 = boto3.client("s3", region_name=target.region)
    prefix = f"datasets/{name}/"
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        s3.upload_file(str(path), target.data_bucket, prefix + path.relative_to(folder).as_posix())
    marker = s3.put_object(Bucket=target.data_bucket, Key=f"{prefix}{READY_MARKER}", Body=b"")
    version = str(marker.get("VersionId") or marker["ETag"].strip('"'))
    run = runs.dataset_run_name(target, name, version)
    return f"{target.state_machine_arn.replace(':stateMachine:', ':execution:')}:{run}"


def _started(target: runs.Target, arn: str) -> None:
    sfn, deadline = boto3.client("stepfunctions", region_name=target.region), time.monotonic() + 30
    while arn not in [
        e["executionArn"] for e in sfn.list_executions(stateMachineArn=target.state_machine_arn)["executions"]
    ]:
        assert time.monotonic() < deadline, "the marker started no run"
        time.sleep(0.2)


def test_raw_images_are_prepared_then_trained_on(deployed: tuple[Emulator, runs.Target], tmp_path: Path) -> None:
    _, target = deployed
    arn = _upload_raw(target, data_set(tmp_path / "raw", per_class=12), "raw-1")  # dev: at least 10 per class
    _started(target, arn)

    run = _wait(target, arn, timeout=180)

    assert run.status == "SUCCEEDED", (run.error, run.cause)
    output: dict[str, Any] = run.output or {}
    assert output["preparation"]["status"] == "SUCCEEDED"
    assert output["preparation"]["images_before"] == {"empty": 12, "person": 12}
    prepared = output["preparation"]["output_uri"]
    assert output["source"]["channels"] == {"train": f"{prepared}train/", "validation": f"{prepared}validation/"}
    assert output["source"]["train_records"] == 2 * 10 * 3  # 10 training images per class, 2 variants each
    names = [s.name for s in run.steps]
    assert names.index("StartPreparation") < names.index("CheckPreparation") < names.index("StartTraining")
    bucket, key = prepared[5:].split("/", 1)
    s3 = boto3.client("s3", region_name=target.region)
    assert s3.head_object(Bucket=bucket, Key=f"{key}train/train.rec")["ContentLength"] > 0


def test_a_rejected_data_set_stops_the_run_with_the_reason(
    deployed: tuple[Emulator, runs.Target], tmp_path: Path
) -> None:
    _, target = deployed
    arn = _upload_raw(target, data_set(tmp_path / "raw", per_class=4), "raw-2")
    _started(target, arn)

    run = _wait(target, arn, timeout=180)

    assert (run.status, run.error) == ("FAILED", "PreparationFailed"), (run.error, run.cause)
    assert "data set rejected: class 'empty' has 4 usable images, fewer than preparation.min_images_per_class (10)" in (
        run.cause or ""
    )
    assert "StartTraining" not in [s.name for s in run.steps]
