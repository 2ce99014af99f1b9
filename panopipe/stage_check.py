"""``panopipe verify-stage``: after a delivery stage deploys, check that what a run needs is there.

The delivery pipeline hands the stage's stack outputs to its check step as environment variables
(:data:`OUTPUT_VARIABLES`, CDK Pipelines' ``env_from_cfn_outputs``). The check reads nothing else:
the state machine must be ACTIVE and each of the three buckets must exist and be versioned (a
bucket that lost versioning could lose an artifact). Where the delivery file asks, a smoke run then
starts from a small model in the data bucket and must SUCCEED within its timeout.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from panopipe import exit_codes
from panopipe.runs import RunError, Target, aws_errors, follow, region_of, start

#: Environment variable → the stage's stack output it carries (storage stack, pipeline stack).
OUTPUT_VARIABLES = {
    "STATE_MACHINE_ARN": "StateMachineArn",
    "DATA_BUCKET": "DataBucketName",
    "ARTIFACTS_BUCKET": "ArtifactsBucketName",
    "ACCESS_LOGS_BUCKET": "AccessLogsBucketName",
}
_BUCKETS = {"DATA_BUCKET": "data", "ARTIFACTS_BUCKET": "artifacts", "ACCESS_LOGS_BUCKET": "access-log"}


class CheckFailed(RunError):
    """The stage is not what a run needs (or the smoke run did not succeed): exit 1."""

    def __init__(self, message: str) -> None:
        super().__init__(message, exit_codes.RUN_FAILED)


@dataclass(frozen=True)
class StageOutputs:
    """The stage's outputs as the check step receives them."""

    state_machine_arn: str
    buckets: Mapping[str, str]  # what it is for ("data", …) → bucket name

    @property
    def region(self) -> str | None:
        """The stage's region (its state machine's)."""
        return region_of(self.state_machine_arn)

    @classmethod
    def from_variables(cls, variables: Mapping[str, str]) -> StageOutputs:
        """Read :data:`OUTPUT_VARIABLES` from ``variables``; one line naming every one missing."""
        missing = [name for name in OUTPUT_VARIABLES if not variables.get(name)]
        if missing:
            raise RunError(
                f"{', '.join(missing)} not set: the delivery pipeline sets them from the stage's stack outputs "
                f"({', '.join(OUTPUT_VARIABLES[m] for m in missing)}); to check by hand, export them",
                exit_codes.USAGE,
            )
        return cls(
            variables["STATE_MACHINE_ARN"],
            {purpose: variables[name] for name, purpose in _BUCKETS.items()},
        )


def _client(service: str, region: str | None) -> Any:
    import boto3

    return boto3.client(service, region_name=region)


def check_stage(outputs: StageOutputs) -> list[str]:
    """What is wrong with the deployed stage (empty: nothing). AWS refusing to answer raises RunError."""
    from botocore.exceptions import ClientError

    problems = []
    with aws_errors("checking the state machine"):
        sfn = _client("stepfunctions", outputs.region)
        try:
            described = sfn.describe_state_machine(stateMachineArn=outputs.state_machine_arn)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "StateMachineDoesNotExist":
                raise
            problems.append(f"state machine {outputs.state_machine_arn} does not exist")
        else:
            if described.get("status", "ACTIVE") != "ACTIVE":
                problems.append(f"state machine {outputs.state_machine_arn} is {described['status']}, not ACTIVE")
    with aws_errors("checking the buckets"):
        s3 = _client("s3", outputs.region)
        for purpose, bucket in outputs.buckets.items():
            try:
                s3.head_bucket(Bucket=bucket)
            except ClientError as error:
                code = error.response.get("Error", {}).get("Code")
                if code not in ("404", "NoSuchBucket", "403", "AccessDenied"):
                    raise
                problems.append(
                    f"{purpose} bucket {bucket} does not exist"
                    if code in ("404", "NoSuchBucket")
                    else f"{purpose} bucket {bucket} is not accessible (403): "
                    "wrong account, or the role lacks s3:ListBucket"
                )
                continue
            versioning = s3.get_bucket_versioning(Bucket=bucket).get("Status")
            if versioning != "Enabled":
                problems.append(
                    f"{purpose} bucket {bucket} has versioning {versioning or 'never enabled'}, not Enabled"
                )
    return problems


def smoke_run(
    outputs: StageOutputs,
    model_key: str,
    *,
    timeout_seconds: float,
    name: str | None = None,
    interval: float = 15.0,
    say: Callable[[str], None] = print,
) -> str:
    """Start a run from ``s3://<data bucket>/<model_key>`` and wait for it; return its ARN if it SUCCEEDED.

    Raises :class:`CheckFailed` when it ends otherwise or is still running at the timeout (it is
    left running: its own timeouts and rollback apply).
    """
    target = Target(outputs.state_machine_arn, outputs.buckets["data"], outputs.region or "")
    run = name or f"smoke-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    model = f"s3://{target.data_bucket}/{model_key}"
    arn = start(target, {"model": model}, run)
    say(f"smoke run {run} started from {model}")
    seen = 0
    last = None
    with aws_errors("following the smoke run"):
        for last in follow(target, arn, interval=interval, timeout=timeout_seconds):
            for step in last.steps[seen:]:
                say(f"  {step.name}")
            seen = len(last.steps)
    assert last is not None
    if not last.done:
        raise CheckFailed(f"smoke run {run} still {last.status} after {timeout_seconds:.0f} s (left running: {arn})")
    if last.status != "SUCCEEDED":
        where = f" at {last.failed_step}" if last.failed_step else ""
        raise CheckFailed(f"smoke run {run} {last.status}{where}: {last.error}: {last.cause}")
    for key, value in last.facts().items():
        say(f"  {key}: {value}")
    return arn
