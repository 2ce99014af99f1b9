"""Start, follow and list pipeline runs: the AWS side of ``panopipe run|watch|status``.

Works the same against a real account and against the local emulator: only the endpoint differs
(boto3 reads ``AWS_ENDPOINT_URL``). The stacks are found by name (``<project>-<env>-pipeline``)
and the data bucket by the naming rule, so nothing but the config is needed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from lambda_handlers.domain import DEFAULT_DATASET_PREFIX, READY_MARKER
from lambda_handlers.names import execution_name
from panopipe.config import EnvironmentConfig
from panopipe.naming import bucket_name

TERMINAL = frozenset({"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"})


class RunError(Exception):
    """Something the user can fix (stack not deployed, data set missing): one clear line."""


@dataclass(frozen=True)
class Target:
    """Where the environment's pipeline lives in the account/endpoint the clients reach."""

    state_machine_arn: str
    data_bucket: str
    region: str


def _client(service: str, region: str | None = None) -> Any:
    import boto3

    return boto3.client(service, region_name=region)


def find_target(config: EnvironmentConfig) -> Target:
    """The deployed state machine (stack output) and data bucket of ``config``'s environment."""
    stack = f"{config.prefix}-pipeline"
    cloudformation = _client("cloudformation", config.region)
    try:
        described = cloudformation.describe_stacks(StackName=stack)["Stacks"][0]
    except Exception as error:  # botocore's ClientError: the stack does not exist here
        raise RunError(f"stack {stack} is not deployed here ({error}); deploy first (panopipe local up)") from None
    outputs = {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}
    if "StateMachineArn" not in outputs:
        raise RunError(f"stack {stack} has no StateMachineArn output; redeploy it")
    arn = outputs["StateMachineArn"]
    region, account = arn.split(":")[3], arn.split(":")[4]
    data = bucket_name(config.project, config.environment, "data", config.account or account, config.region or region)
    return Target(arn, data, region)


def upload_dataset(target: Target, directory: Path, name: str, prefix: str = DEFAULT_DATASET_PREFIX) -> str:
    """Upload a local data set folder (``train/``, ``validation/``) and its ``_READY`` marker last.

    ``prefix`` is the config's ``runs.dataset_prefix``: where the trigger rule listens.

    Returns the version of the marker (VersionId, or ETag when unversioned): the run's identity.
    """
    if not (directory / "train").is_dir() or not (directory / "validation").is_dir():
        raise RunError(f"{directory} must hold train/ and validation/ folders")
    s3 = _client("s3", target.region)
    folder = f"{prefix}{name}/"
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        s3.upload_file(str(path), target.data_bucket, folder + path.relative_to(directory).as_posix())
    marker = s3.put_object(Bucket=target.data_bucket, Key=folder + READY_MARKER, Body=b"")
    return str(marker.get("VersionId") or marker["ETag"].strip('"'))


def start(target: Target, run_input: dict[str, Any], name: str | None = None) -> str:
    """Start one execution; a data set run is named after the data set version (never run twice)."""
    sfn = _client("stepfunctions", target.region)
    kwargs: dict[str, Any] = {"stateMachineArn": target.state_machine_arn, "input": json.dumps(run_input)}
    if name:
        kwargs["name"] = name
    return str(sfn.start_execution(**kwargs)["executionArn"])


def dataset_run_name(target: Target, name: str, version: str, prefix: str = DEFAULT_DATASET_PREFIX) -> str:
    """The execution name the trigger gives this data set version (so the two never both run)."""
    return execution_name(target.data_bucket, f"{prefix}{name}/", version)


@dataclass
class Step:
    """One state of a run as the history shows it."""

    name: str
    kind: str
    entered: datetime
    exited: datetime | None = None

    def seconds(self, now: datetime) -> float:
        """How long the step took (or has taken so far)."""
        return ((self.exited or now) - self.entered).total_seconds()


@dataclass
class Progress:
    """What ``watch`` shows: the steps so far, and the outcome once the run has ended."""

    arn: str
    status: str
    started: datetime
    stopped: datetime | None
    steps: list[Step] = field(default_factory=list)
    output: dict[str, Any] | None = None
    error: str | None = None
    cause: str | None = None
    failed_step: str | None = None

    @property
    def done(self) -> bool:
        """True once the execution has ended."""
        return self.status in TERMINAL

    def facts(self) -> dict[str, str]:
        """The final metric, package version and application instances, from the run's output."""
        out = self.output or {}
        found: dict[str, str] = {}
        metric = (out.get("training") or {}).get("metric") or {}
        if metric.get("name"):
            found["metric"] = f"{metric['name']} = {metric.get('value')} (threshold {metric.get('threshold')})"
        package = out.get("package") or {}
        if package.get("patch_version"):
            found["package version"] = (
                f"{package.get('package_name')} {package.get('package_version')} patch {package['patch_version']}"
            )
        for device in (out.get("deployment") or {}).get("devices", []):
            found[f"instance on {device.get('device')}"] = f"{device.get('instance_id')} ({device.get('status')})"
        return found


def _history(sfn: Any, arn: str) -> Iterator[dict[str, Any]]:
    for page in sfn.get_paginator("get_execution_history").paginate(executionArn=arn):
        yield from page["events"]


def progress(target: Target, arn: str, sfn: Any = None) -> Progress:
    """The run's steps (from its history) and, once ended, its outcome (``sfn``: a client to reuse)."""
    sfn = sfn or _client("stepfunctions", target.region)
    described = sfn.describe_execution(executionArn=arn)
    result = Progress(arn, described["status"], described["startDate"], described.get("stopDate"))
    open_steps: dict[str, Step] = {}
    for event in _history(sfn, arn):
        kind = event["type"]
        if kind.endswith("StateEntered"):
            details = event.get("stateEnteredEventDetails") or {}
            step = Step(details.get("name", "?"), kind.removesuffix("StateEntered"), event["timestamp"])
            result.steps.append(step)
            open_steps[step.name] = step
        elif kind.endswith("StateExited"):
            details = event.get("stateExitedEventDetails") or {}
            name = details.get("name", "?")
            if name in open_steps:
                open_steps.pop(name).exited = event["timestamp"]
            result.failed_step = _failed_step(details.get("output")) or result.failed_step
    if described.get("output"):
        result.output = json.loads(described["output"])
    result.error, result.cause = described.get("error"), described.get("cause")
    return result


def _failed_step(state_json: str | None) -> str | None:
    """The run state's ``failed_step`` (set by a Catch, or by the deployment's check step), if any."""
    try:
        state = json.loads(state_json or "{}")
    except ValueError:
        return None
    step = state.get("failed_step") if isinstance(state, dict) else None
    return str(step) if step else None


def follow(target: Target, arn: str, interval: float = 1.0, timeout: float | None = None) -> Iterator[Progress]:
    """Yield the run's progress every ``interval`` seconds until it ends (or ``timeout`` passes)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    sfn = _client("stepfunctions", target.region)  # one client for the whole watch
    while True:
        current = progress(target, arn, sfn)
        yield current
        if current.done or (deadline is not None and time.monotonic() > deadline):
            return
        time.sleep(interval)


def recent_runs(target: Target, limit: int = 10) -> list[dict[str, Any]]:
    """The newest executions of the pipeline (name, status, start and stop)."""
    sfn = _client("stepfunctions", target.region)
    runs = sfn.list_executions(stateMachineArn=target.state_machine_arn, maxResults=limit)["executions"]
    return sorted(runs, key=lambda r: r["startDate"], reverse=True)[:limit]
