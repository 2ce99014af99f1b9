"""Tell the team how the run ended (SNS), and leave the outcome in the state for the final state.

The state machine calls :data:`handler` at the end of every run, succeeded or failed. The run
failed when a step's Catch added ``error`` ({Error, Cause}) and ``failed_step`` to the state, or
when the deployment ended FAILED / TIMED_OUT (then rolled back). ``state["summary"]`` is what the
final Fail state reads: ``$.summary.error`` (an error class name; DeploymentFailed or StepTimedOut
for a deployment) and ``$.summary.reason`` (one line).

Environment: TOPIC_ARN, STEP_SETTINGS (the subject's ``[prefix]``).
"""

from __future__ import annotations

import json
from typing import Any

from lambda_handlers import settings as cfg
from lambda_handlers.aws import clients
from lambda_handlers.errors import DeploymentFailed, StepTimedOut
from lambda_handlers.state import FAILED, SUCCEEDED, TIMED_OUT, State
from lambda_handlers.step import step

SUBJECT_MAX = 100
REASON_MAX = 1000


def one_line(text: str, limit: int = REASON_MAX) -> str:
    """``text`` with its whitespace collapsed to single spaces, cut at ``limit`` characters."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def error_reason(error: dict[str, Any]) -> str:
    """The message of a caught error: the Lambda ``errorMessage`` in ``Cause``, or ``Cause`` itself."""
    cause = error.get("Cause") or ""
    message: Any = cause
    try:
        parsed = json.loads(cause)
    except (TypeError, ValueError):
        parsed = None
    if isinstance(parsed, dict):
        message = parsed.get("errorMessage") or parsed.get("Cause") or parsed.get("cause") or cause
    return one_line(str(message)) or str(error.get("Error") or "no reason given")


def _source(state: State) -> str:
    source = state.get("source") or {}
    if source.get("kind") == "dataset":
        return f"data set s3://{source.get('bucket')}/{source.get('prefix', '')}"
    if source.get("kind") == "model":
        return f"model {source.get('s3_uri')}"
    if source.get("kind") == "training_job":
        return f"training job {source.get('job_name')}"
    given = state.get("input")
    return f"input {json.dumps(given, sort_keys=True)}" if given else "unknown"


def _device_problems(section: dict[str, Any]) -> list[str]:
    return [
        f"{d['device']}: {d['status']} - {d.get('status_description') or 'no description'}"
        for d in section.get("devices", [])
        if d.get("status") in (FAILED, TIMED_OUT)
    ]


def summarize(state: State) -> dict[str, Any]:
    """The outcome: ``{"status", "error", "reason", "run", "failed_step", ...}`` (no AWS calls)."""
    deployment = state.get("deployment") or {}
    error: str | None = None
    reason = ""
    failed_step = state.get("failed_step")
    if state.get("error"):
        error, reason = str(state["error"].get("Error") or "Error"), error_reason(state["error"])
    elif deployment.get("status") in (FAILED, TIMED_OUT):
        error = StepTimedOut.__name__ if deployment["status"] == TIMED_OUT else DeploymentFailed.__name__
        reason = one_line("deployment " + deployment["status"] + ": " + "; ".join(_device_problems(deployment)))
        failed_step = "CheckDeployment"  # the step that saw the devices fail (then rolled back)
    package = state.get("package") or {}
    if error is None:
        devices = deployment.get("devices", [])
        reason = (
            f"patch {str(package.get('patch_version', '?'))[:12]} of {package.get('package_name', '?')} "
            f"runs on {len(devices)} device(s)"
        )
    summary: dict[str, Any] = {
        "status": FAILED if error else SUCCEEDED,
        "error": error,
        "reason": reason,
        "run": (state.get("run") or {}).get("name"),
        "source": _source(state),
        "failed_step": failed_step,
        "instances": {d["device"]: d.get("instance_id") for d in deployment.get("devices", [])},
    }
    if state.get("rollback"):
        summary["rollback"] = state["rollback"].get("status")
    return summary


def subject(prefix: str, summary: dict[str, Any]) -> str:
    """``[prefix] run <name> <STATUS>``: ASCII, one line, at most 100 characters (SNS rules)."""
    status = f" {summary['status']}"
    head = one_line(f"[{prefix}] run {summary.get('run') or '?'}", SUBJECT_MAX)
    text = head[: SUBJECT_MAX - len(status)] + status
    return text.encode("ascii", "replace").decode("ascii")


def _devices_lines(section: dict[str, Any]) -> list[str]:
    lines = []
    for d in section.get("devices", []):
        replaced = f" replacing {d['replaced']}" if d.get("replaced") else ""
        described = f" - {d['status_description']}" if d.get("status_description") else ""
        lines.append(
            f"  - {d['device']} ({d.get('device_id')}): instance {d.get('instance_id') or '-'}{replaced}: "
            f"{d.get('status')}{described}"
        )
    return lines


def message(state: State, summary: dict[str, Any]) -> str:
    """The e-mail body: outcome, reason, jobs, metric, package, instances, rollback."""
    lines = [f"Run {summary['run']}: {summary['status']}", f"Source: {summary['source']}"]
    if summary["error"]:
        if summary.get("failed_step"):
            lines.append(f"Failed step: {summary['failed_step']}")
        lines += [f"Error: {summary['error']}", f"Reason: {summary['reason']}"]
    training = state.get("training") or {}
    if training.get("job_name"):
        lines.append(f"Training job: {training['job_name']} ({training.get('status', '?')})")
    metric = training.get("metric") or {}
    if metric.get("name"):
        lines.append(
            f"Metric: {metric['name']} = {metric.get('value', '?')} (threshold {metric.get('threshold', '?')})"
        )
    compilation = state.get("compilation") or {}
    if compilation.get("job_name"):
        lines.append(f"Compilation job: {compilation['job_name']} ({compilation.get('status', '?')})")
    package = state.get("package") or {}
    if package.get("patch_version"):
        lines.append(
            f"Model package: {package.get('package_name')} version {package.get('package_version')} "
            f"patch {package['patch_version']} ({package.get('status', '?')})"
        )
        if package.get("deregistered"):
            lines.append(f"  deregistered old patches: {', '.join(package['deregistered'])}")
    for title, name in (("Deployment", "deployment"), ("Rollback", "rollback")):
        section = state.get(name) or {}
        if section:
            lines.append(f"{title}: {section.get('status', '?')}")
            lines += _devices_lines(section)
    return "\n".join(lines) + "\n"


def notify(state: State) -> State:
    """Publish the outcome to the pipeline's topic; return the state with ``summary``.

    A failure to publish raises (throttling is retried by the state machine).
    """
    summary = summarize(state)
    response = clients.sns().publish(
        TopicArn=cfg.env(cfg.TOPIC_ARN),
        Subject=subject(cfg.settings().prefix, summary),
        Message=message(state, summary),
    )
    return {**state, "summary": {**summary, "message_id": response["MessageId"]}}


handler = step(notify)
