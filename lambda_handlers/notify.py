"""Tell the team how the run ended (SNS), and leave the outcome in the state for the final state.

The state machine calls :func:`notify` at the end of every run: succeeded, superseded (newer data
was deployed already: the lock's ``reason`` says which) or failed. The run
failed when a step's Catch added ``error`` ({Error, Cause}) and ``failed_step`` to the state, or
when the deployment ended FAILED / TIMED_OUT (then rolled back; the deployment's check step set
``failed_step``). ``state["summary"]`` is what the
final Fail state reads: ``$.summary.error`` (an error class name; DeploymentFailed or StepTimedOut
for a deployment) and ``$.summary.reason`` (one line).

Environment: TOPIC_ARN, STEP_SETTINGS (the subject's ``[prefix]``).
"""

from __future__ import annotations

import json
from typing import Any

from lambda_handlers import settings
from lambda_handlers.aws import clients
from lambda_handlers.deployment_lock import SUPERSEDED
from lambda_handlers.domain import bounded
from lambda_handlers.errors import DeploymentFailed, StepTimedOut
from lambda_handlers.state import FAILED, SUCCEEDED, TIMED_OUT, CaughtError, DevicesSection, RunState, Summary
from lambda_handlers.step import step

SUBJECT_MAX = 100
REASON_MAX = 1000
INPUT_MAX = 500
#: SNS takes at most 256 KiB of message; what we send stays well below (a run's own texts are bounded).
MESSAGE_MAX_BYTES = 200_000


def one_line(text: str, limit: int = REASON_MAX) -> str:
    """``text`` with its whitespace collapsed to single spaces, cut at ``limit`` characters."""
    return bounded(" ".join(str(text).split()), limit)


def error_reason(error: CaughtError) -> str:
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


def _source(state: RunState) -> str:
    source = state.get("source")
    if source is not None:
        if source["kind"] == "dataset":
            return f"data set s3://{source['bucket']}/{source['prefix']}"
        if source["kind"] == "model":
            return f"model {source['s3_uri']}"
        return f"training job {source['job_name']}"
    given = state.get("input")  # the run's input, as the user gave it: unbounded
    return f"input {bounded(json.dumps(given, sort_keys=True, default=str), INPUT_MAX)}" if given else "unknown"


def _device_problems(section: DevicesSection) -> list[str]:
    return [
        f"{d['device']}: {d['status']} - {d.get('status_description') or 'no description'}"
        for d in section.get("devices", [])
        if d.get("status") in (FAILED, TIMED_OUT)
    ]


def _counted(state: RunState) -> str:
    """``"on 3 of 200 devices (2 rolled back, 1 not)"``-style words from the fleet's counts, or ""."""
    counts = state.get("fleet", {}).get("counts")
    if not counts:
        return ""
    bad = counts["failed"] + counts["timed_out"]
    rolled = f"{counts['rolled_back']} rolled back"
    if counts["rollback_failed"] or counts["rollback_skipped"]:
        rolled += (
            f", {counts['rollback_failed']} rollback failed, {counts['rollback_skipped']} without an earlier good one"
        )
    return f" on {bad} of {counts['devices']} devices ({counts['succeeded']} succeeded; {rolled})"


def summarize(state: RunState) -> Summary:
    """The outcome: ``{"status", "error", "reason", "run", "failed_step", ...}`` (no AWS calls)."""
    deployment: DevicesSection = state.get("deployment") or {}
    error: str | None = None
    reason = ""
    lock = state.get("lock") or {}
    if "error" not in state and lock.get("status") == SUPERSEDED:
        return {
            "status": SUPERSEDED,
            "error": None,
            "reason": one_line(str(lock.get("reason", "newer data was deployed"))),
            "run": state["run"]["name"] if "run" in state else None,
            "source": _source(state),
            "failed_step": None,
            "instances": {},
        }
    if "error" in state:
        error, reason = str(state["error"].get("Error") or "Error"), error_reason(state["error"])
    elif deployment.get("status") in (FAILED, TIMED_OUT):
        status = str(deployment.get("status"))
        error = StepTimedOut.__name__ if status == TIMED_OUT else DeploymentFailed.__name__
        reason = one_line(f"deployment {status}{_counted(state)}: " + "; ".join(_device_problems(deployment)))
    package: dict[str, Any] = dict(state.get("package") or {})
    code: dict[str, Any] = dict(state.get("code_package") or {})
    if error is None:
        devices = deployment.get("devices", [])
        reason = (
            f"patch {str(package.get('patch_version', '?'))[:12]} of {package.get('package_name', '?')} "
            f"with patch {str(code.get('patch_version', '?'))[:12]} of {code.get('package_name', '?')} "
            f"runs on {len(devices)} device(s)"
        )
    summary: Summary = {
        "status": FAILED if error else SUCCEEDED,
        "error": error,
        "reason": reason,
        "run": state["run"]["name"] if "run" in state else None,
        "source": _source(state),
        "failed_step": state.get("failed_step") if error else None,
        "instances": {d["device"]: d.get("instance_id") for d in deployment.get("devices", [])},
    }
    if "rollback" in state:
        summary["rollback"] = str(state["rollback"].get("status"))
    if state.get("fleet", {}).get("counts"):
        summary["counts"] = state["fleet"]["counts"]
    return summary


def fit(text: str, limit_bytes: int) -> str:
    """``text`` cut to ``limit_bytes`` of UTF-8 (whole characters), with a note of what was cut."""
    data = text.encode("utf-8")
    if len(data) <= limit_bytes:
        return text
    note = f"\n… (message cut: {len(data)} bytes, SNS takes at most 262144)\n"
    return data[: limit_bytes - len(note.encode())].decode("utf-8", "ignore") + note


def subject(prefix: str, summary: Summary) -> str:
    """``[prefix] run <name> <STATUS>``: ASCII, one line, at most 100 characters (SNS rules)."""
    status = f" {summary['status']}"
    head = one_line(f"[{prefix}] run {summary.get('run') or '?'}", SUBJECT_MAX)
    text = head[: SUBJECT_MAX - len(status)] + status
    return text.encode("ascii", "replace").decode("ascii")


#: Past this many devices a section lists only those that did not succeed (and counts the others).
LISTED_DEVICES = 20


def _devices_lines(section: DevicesSection) -> list[str]:
    lines = []
    devices = section.get("devices", [])
    shown = devices if len(devices) <= LISTED_DEVICES else [d for d in devices if d.get("status") != SUCCEEDED]
    if len(shown) < len(devices):
        lines.append(f"  {len(devices) - len(shown)} of {len(devices)} devices SUCCEEDED; the others:")
    for d in shown:
        replaced = f" replacing {d['replaced']}" if d.get("replaced") else ""
        described = f" - {d['status_description']}" if d.get("status_description") else ""
        lines.append(
            f"  - {d['device']} ({d.get('device_id')}): instance {d.get('instance_id') or '-'}{replaced}: "
            f"{d.get('status')}{described}"
        )
    return lines


def message(state: RunState, summary: Summary) -> str:
    """The e-mail body: outcome, reason, jobs, metric, both package versions, instances, rollback."""
    lines = [f"Run {summary['run']}: {summary['status']}", f"Source: {summary['source']}"]
    if summary["error"]:
        if summary.get("failed_step"):
            lines.append(f"Failed step: {summary['failed_step']}")
        lines += [f"Error: {summary['error']}", f"Reason: {summary['reason']}"]
    training: dict[str, Any] = dict(state.get("training") or {})
    if training.get("job_name"):
        lines.append(f"Training job: {training['job_name']} ({training.get('status', '?')})")
    metric = training.get("metric") or {}
    if metric.get("name"):
        lines.append(
            f"Metric: {metric['name']} = {metric.get('value', '?')} (threshold {metric.get('threshold', '?')})"
        )
    compilation: dict[str, Any] = dict(state.get("compilation") or {})
    if compilation.get("job_name"):
        lines.append(f"Compilation job: {compilation['job_name']} ({compilation.get('status', '?')})")
    package: dict[str, Any] = dict(state.get("package") or {})
    if package.get("patch_version"):
        lines.append(
            f"Model package: {package.get('package_name')} version {package.get('package_version')} "
            f"patch {package['patch_version']} ({package.get('status', '?')})"
        )
        if package.get("deregistered"):
            lines.append(f"  deregistered old patches: {', '.join(package['deregistered'])}")
    code: dict[str, Any] = dict(state.get("code_package") or {})
    if code.get("patch_version"):
        lines.append(
            f"Code package: {code.get('package_name')} version {code.get('package_version')} "
            f"patch {code['patch_version']} (registered by panopipe package-app)"
        )
    if summary["status"] == SUPERSEDED:
        lines.append(f"Superseded: {summary['reason']}")
    counts = summary.get("counts")
    if counts:
        lines.append("Devices: " + ", ".join(f"{key.replace('_', ' ')} {value}" for key, value in counts.items()))
    for title, section in (("Deployment", state.get("deployment")), ("Rollback", state.get("rollback"))):
        if section:
            lines.append(f"{title}: {section.get('status', '?')}")
            lines += _devices_lines(section)
    return "\n".join(lines) + "\n"


@step
def notify(state: RunState) -> RunState:
    """Publish the outcome to the pipeline's topic; return the state with ``summary``.

    A failure to publish raises (throttling is retried by the state machine).
    """
    summary = summarize(state)
    response = clients.sns().publish(
        TopicArn=settings.env(settings.TOPIC_ARN),
        Subject=subject(settings.current().prefix, summary),
        Message=fit(message(state, summary), MESSAGE_MAX_BYTES),
    )
    return {**state, "summary": {**summary, "message_id": response["MessageId"]}}
