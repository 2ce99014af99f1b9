"""Start, follow and list pipeline runs: the AWS side of ``panopipe run|watch|status``.

Works the same against a real account and against the local emulator: only the endpoint differs
(boto3 reads ``AWS_ENDPOINT_URL``). The stacks are found by name (``<project>-<env>-pipeline``)
and the data bucket by the naming rule, so nothing but the config is needed.

Every AWS call runs inside :func:`aws_errors`, which turns botocore's exceptions into a
:class:`RunError` that says in one line what is wrong (no region, no credentials, not deployed,
unreachable, refused) and carries the CLI's exit code for it (:mod:`panopipe.exit_codes`).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from lambda_handlers.domain import DEFAULT_DATASET_PREFIX, READY_MARKER
from lambda_handlers.names import execution_name
from panopipe import exit_codes
from panopipe.config import EnvironmentConfig
from panopipe.naming import bucket_name

TERMINAL = frozenset({"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"})

#: A data set folder name: one S3 key segment the trigger's marker rule and the run name accept.
DATASET_NAME = re.compile(r"[A-Za-z0-9._-]{1,100}")
#: What the pipeline's validate step accepts as ``model`` and ``training_job`` (the syntax only).
MODEL_URI = re.compile(r"s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/.+")
TRAINING_JOB = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}")
#: A Step Functions name (state machine or execution): 1-80 characters, none of these.
_NAME = r"[^\s<>{}\[\]?*\"#%\\^|~`$&,;:/]{1,80}"
RUN_NAME = re.compile(_NAME)
EXECUTION_ARN = re.compile(rf"arn:aws[a-z-]*:states:(?P<region>[a-z0-9-]+):\d{{12}}:execution:{_NAME}:{_NAME}")

_CREDENTIAL_CODES = frozenset(
    {
        "ExpiredToken",
        "ExpiredTokenException",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "AuthFailure",
        "InvalidAccessKeyId",
    }
)


class RunError(Exception):
    """Something the user can fix (stack not deployed, data set missing): one clear line.

    ``exit_code`` is the CLI's exit code for it: :data:`~panopipe.exit_codes.USAGE` for bad input,
    :data:`~panopipe.exit_codes.AWS` (the default) when AWS is not ready or refuses.
    """

    def __init__(self, message: str, exit_code: int = exit_codes.AWS) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def dataset_name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a data set folder (one S3 key segment), or None if it can."""
    if not name:
        return "is empty"
    if len(name) > 100:
        return f"is {len(name)} characters long (at most 100)"
    if "/" in name:
        return "must be one folder name, without /"
    if name.strip(".") == "":
        return "must not be . or .."
    if ".." in name:
        return "must not contain .."
    if not DATASET_NAME.fullmatch(name):
        return "may only hold letters, digits, . _ and -"
    return None


def execution_arn(target: Target, run: str) -> str:
    """The execution ARN of the pipeline's run named ``run``."""
    return f"{target.state_machine_arn.replace(':stateMachine:', ':execution:', 1)}:{run}"


def _where() -> str:
    endpoint = os.environ.get("AWS_ENDPOINT_URL")
    return f" at {endpoint}" if endpoint else ""


def _explain(error: Exception, doing: str) -> RunError:
    """One line for a botocore/boto3 exception raised while ``doing`` something."""
    from botocore.exceptions import (
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
        NoRegionError,
        PartialCredentialsError,
    )

    if isinstance(error, NoRegionError):
        return RunError(
            "no AWS region is configured: set AWS_REGION (e.g. export AWS_REGION=us-west-2), run `aws configure`,"
            " or set region: in the config; to use the local AWS instead, start it: panopipe local up"
        )
    if isinstance(error, NoCredentialsError | PartialCredentialsError):
        return RunError(
            f"no AWS credentials found ({error}) while {doing}: run `aws configure` (or `aws sso login`), or set"
            " AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY; for the local AWS: panopipe local up"
        )
    if isinstance(error, EndpointConnectionError):
        hint = " (is the local AWS still running? panopipe local up)" if os.environ.get("AWS_ENDPOINT_URL") else ""
        return RunError(f"cannot reach AWS while {doing}: {error}{hint}")
    if isinstance(error, ClientError):
        code = error.response.get("Error", {}).get("Code", "?")
        message = error.response.get("Error", {}).get("Message", "")
        if code in _CREDENTIAL_CODES:
            return RunError(
                f"AWS refused the credentials while {doing} ({code}: {message}): refresh them"
                " (`aws sso login`, `aws configure`) or check AWS_PROFILE"
            )
        if "AccessDenied" in code or code in ("UnauthorizedOperation", "AuthorizationError"):
            return RunError(f"AWS denied access while {doing} ({code}: {message})")
        return RunError(f"AWS error while {doing}{_where()}: {code}: {message}")
    return RunError(f"AWS error while {doing}{_where()}: {error}")


@contextmanager
def aws_errors(doing: str, known: Mapping[str, tuple[str, int]] | None = None) -> Iterator[None]:
    """Turn botocore's and boto3's exceptions into :class:`RunError` (``doing``: for the message).

    ``known`` maps an AWS error code to the message and exit code of that case (e.g. a stack that
    does not exist), checked before the general rules.
    """
    from boto3.exceptions import Boto3Error
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        if known and code in known:
            message, exit_code = known[code]
            raise RunError(message, exit_code) from None
        raise _explain(error, doing) from None
    except (BotoCoreError, Boto3Error) as error:
        raise _explain(error, doing) from None


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
    with aws_errors(f"looking up the stack {stack}"):
        cloudformation = _client("cloudformation", config.region)
    region = cloudformation.meta.region_name
    # CloudFormation says ValidationError for a stack that does not exist (and for nothing else here).
    missing = (
        f"stack {stack} is not deployed in {region}{_where()}: deploy it (npx cdk deploy '**' -c config=<config>),"
        " or start the local AWS with it (panopipe local up)",
        exit_codes.AWS,
    )
    with aws_errors(f"looking up the stack {stack}", {"ValidationError": missing}):
        described = cloudformation.describe_stacks(StackName=stack)["Stacks"][0]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}
    if "StateMachineArn" not in outputs:
        raise RunError(f"stack {stack} has no StateMachineArn output; redeploy it")
    arn = outputs["StateMachineArn"]
    region, account = arn.split(":")[3], arn.split(":")[4]
    data = bucket_name(config.project, config.environment, "data", config.account or account, config.region or region)
    return Target(arn, data, region)


def upload_dataset(target: Target, directory: Path, name: str, prefix: str = DEFAULT_DATASET_PREFIX) -> str:
    """Upload a local data set folder and its ``_READY`` marker last.

    Either prepared (``train/`` and ``validation/``) or raw (one folder of images per class, which
    the pipeline's preparation step prepares). ``prefix`` is the config's ``runs.dataset_prefix``:
    where the trigger rule listens.

    Returns the version of the marker (VersionId, or ETag when unversioned): the run's identity.
    """
    if problem := dataset_folder_problem(directory):
        raise RunError(f"{directory}: {problem}", exit_codes.USAGE)
    folder = f"{prefix}{name}/"
    with aws_errors(f"uploading the data set to s3://{target.data_bucket}/{folder}"):
        s3 = _client("s3", target.region)
        for path in sorted(p for p in directory.rglob("*") if p.is_file()):
            s3.upload_file(str(path), target.data_bucket, folder + path.relative_to(directory).as_posix())
        marker = s3.put_object(Bucket=target.data_bucket, Key=folder + READY_MARKER, Body=b"")
    return str(marker.get("VersionId") or marker["ETag"].strip('"'))


_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def dataset_folder_problem(directory: Path) -> str | None:
    """Why ``directory`` is no data set to upload, or None: prepared channels, or raw class folders."""
    if _prepared(directory) or _class_folders(directory):
        return None
    return (
        "must hold train/ and validation/ folders (a prepared data set) or one folder of "
        ".jpg/.jpeg/.png images per class (raw: the pipeline prepares it)"
    )


def _prepared(directory: Path) -> bool:
    return (directory / "train").is_dir() and (directory / "validation").is_dir()


def _class_folders(directory: Path) -> list[Path]:
    """The sub-folders of ``directory`` that hold images (a raw data set's classes)."""
    if not directory.is_dir():
        return []
    return [
        folder
        for folder in sorted(directory.iterdir())
        if folder.is_dir() and any(p.suffix.lower() in _IMAGE_SUFFIXES for p in folder.iterdir() if p.is_file())
    ]


def start(target: Target, run_input: dict[str, Any], name: str | None = None) -> str:
    """Start one execution; a data set run is named after the data set version (never run twice).

    If a run of that name exists already (the trigger saw the same ``_READY`` marker first), that
    run is the one: its ARN is returned.
    """
    kwargs: dict[str, Any] = {"stateMachineArn": target.state_machine_arn, "input": json.dumps(run_input)}
    if name:
        kwargs["name"] = name
    from botocore.exceptions import ClientError

    with aws_errors("starting a run"):
        sfn = _client("stepfunctions", target.region)
        try:
            return str(sfn.start_execution(**kwargs)["executionArn"])
        except ClientError as error:
            if name and error.response.get("Error", {}).get("Code") == "ExecutionAlreadyExists":
                return execution_arn(target, name)
            raise


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
        """The final metric, both package versions and application instances, from the run's output."""
        out = self.output or {}
        found: dict[str, str] = {}
        metric = (out.get("training") or {}).get("metric") or {}
        if metric.get("name"):
            found["metric"] = f"{metric['name']} = {metric.get('value')} (threshold {metric.get('threshold')})"
        for fact, section in (("model package", "package"), ("code package", "code_package")):
            package = out.get(section) or {}
            if package.get("patch_version"):
                found[fact] = (
                    f"{package.get('package_name')} {package.get('package_version')} patch {package['patch_version']}"
                )
        for device in (out.get("deployment") or {}).get("devices", []):
            found[f"instance on {device.get('device')}"] = f"{device.get('instance_id')} ({device.get('status')})"
        return found


def _history(sfn: Any, arn: str) -> Iterator[dict[str, Any]]:
    for page in sfn.get_paginator("get_execution_history").paginate(executionArn=arn):
        yield from page["events"]


def region_of(arn: str) -> str | None:
    """The region in an ARN (``arn:<partition>:<service>:<region>:…``), or None if it has none."""
    parts = arn.split(":")
    return (parts[3] or None) if len(parts) > 3 else None


def progress(target: Target | None, arn: str, sfn: Any = None) -> Progress:
    """The run's steps (from its history) and, once ended, its outcome (``sfn``: a client to reuse).

    The client is made for the run's region (its ARN's): ``target`` may be None.
    """
    sfn = sfn or _client("stepfunctions", region_of(arn) or (target.region if target else None))
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


def follow(target: Target | None, arn: str, interval: float = 1.0, timeout: float | None = None) -> Iterator[Progress]:
    """Yield the run's progress every ``interval`` seconds until it ends (or ``timeout`` passes)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    sfn = _client("stepfunctions", region_of(arn) or (target.region if target else None))  # one client for the watch
    while True:
        current = progress(target, arn, sfn)
        yield current
        if current.done or (deadline is not None and time.monotonic() > deadline):
            return
        time.sleep(interval)


def package_versions(sfn: Any, arn: str) -> dict[str, str]:
    """``{"model package": "<version> <patch 12>", "code package": ...}`` of one run, as far as it got.

    From the execution's output when it succeeded, else from the state its last state entered
    (a failed run ends in a Fail state whose input is the whole run state).
    """
    described = sfn.describe_execution(executionArn=arn)
    state: Any = None
    if described.get("output"):
        state = json.loads(described["output"])
    else:
        events = sfn.get_execution_history(executionArn=arn, reverseOrder=True, maxResults=5)["events"]
        for event in sorted(events, key=lambda e: int(e["id"]), reverse=True):  # newest first, whoever answers
            text = (event.get("stateEnteredEventDetails") or {}).get("input")
            try:
                state = json.loads(text) if text else None
            except ValueError:
                state = None
            if isinstance(state, dict):
                break
    found: dict[str, str] = {}
    for column, section in (("model package", "package"), ("code package", "code_package")):
        package = (state.get(section) if isinstance(state, dict) else None) or {}
        if package.get("patch_version"):
            found[column] = f"{package.get('package_version')} {str(package['patch_version'])[:12]}"
    return found


def recent_runs(target: Target, limit: int = 10, packages: bool = False) -> list[dict[str, Any]]:
    """The newest executions of the pipeline (name, status, start and stop).

    With ``packages``, each also has ``packages``: :func:`package_versions` of the run (one or two calls more).
    """
    with aws_errors("listing the runs"):
        sfn = _client("stepfunctions", target.region)
        runs = sfn.list_executions(stateMachineArn=target.state_machine_arn, maxResults=limit)["executions"]
        newest = sorted(runs, key=lambda r: r["startDate"], reverse=True)[:limit]
        if not packages:
            return newest
        return [{**run, "packages": package_versions(sfn, run["executionArn"])} for run in newest]
