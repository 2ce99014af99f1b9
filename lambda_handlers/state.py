"""The run's state: the JSON document each step receives whole and returns whole, updated.

The state machine's first state builds ``{"input": <execution input>, "run": {"name", "started"}}``;
each Lambda step adds or updates its own section and returns the whole document
(``ResultPath: "$"``). A Catch keeps the document and adds ``error`` ({Error, Cause}) and
``failed_step``. Sections, in the order they appear:

- ``source``: the validated input: ``{"kind": "dataset", "uri", "bucket", "prefix", "s3_data_type"
  (S3Prefix | ManifestFile), "channels": {"train", "validation"}}``, ``{"kind": "model", "s3_uri"}``
  or ``{"kind": "training_job", "job_name"}``.
- ``model``: the raw artifact and how to read it: ``{"s3_uri", "framework", "framework_version",
  "input_name", "input_shape"}`` (set by validate_input, or by check_training when training).
- ``training``: ``{"job_name", "status", "secondary_status", "deadline", "polls", "metric": {"name",
  "value", "threshold", "goal"}}``.
- ``compilation``: ``{"job_name", "status", "deadline", "polls", "output_uri"}``.
- ``package``: the registration (``package_registration.Registration`` fields) + ``status``,
  ``deadline``, ``polls``, ``deregistered``.
- ``deployment``: ``{"status", "deadline", "polls", "devices": [{"device", "device_id",
  "instance_id", "replaced", "status", "status_description", "manifest_key"}]}``.
- ``rollback``: same shape as ``deployment``, for the devices that failed or timed out; a device
  with no earlier good deployment is ``SKIPPED``; the rollback itself may end FAILED or TIMED_OUT.
- ``summary``: what notify sent: ``{"status", "error", "reason", ...}``.

Every wait loop's check step sets its section's ``status`` to one of the values below, and the
state machine's Choice reads only that: failures other than a failed deployment raise typed errors
(``errors.py``) instead, which the state machine catches by name.
"""

from __future__ import annotations

import time
from typing import Any

IN_PROGRESS = "IN_PROGRESS"
SUCCEEDED = "SUCCEEDED"
FAILED = "FAILED"  # deployment and rollback only: the Choice routes to rollback / the failure report
TIMED_OUT = "TIMED_OUT"  # deployment and rollback only (other loops raise StepTimedOut)
SKIPPED = "SKIPPED"  # rollback of a device that never had a good deployment

State = dict[str, Any]


def deadline_after(seconds: int, now: float | None = None) -> int:
    """Epoch seconds ``seconds`` from now: stored in a section when its wait loop starts."""
    return int((time.time() if now is None else now) + seconds)


def past(deadline: int, now: float | None = None) -> bool:
    """True once a loop's deadline has passed."""
    return (time.time() if now is None else now) > deadline


def with_section(state: State, name: str, **values: Any) -> State:
    """A copy of ``state`` whose section ``name`` is updated with ``values``."""
    section = dict(state.get(name) or {})
    section.update(values)
    return {**state, name: section}


def loop_started(state: State, name: str, timeout_seconds: int, since: Any = None, **values: Any) -> State:
    """Section ``name`` entering its wait loop: IN_PROGRESS, no polls yet, a deadline from ``since``.

    ``since`` is when the awaited work began (a job's CreationTime, datetime or epoch seconds);
    None means now. A retried step that adopts an earlier job thus keeps that job's deadline.
    """
    start = since.timestamp() if hasattr(since, "timestamp") else since
    values.setdefault("status", IN_PROGRESS)
    return with_section(state, name, **values, polls=0, deadline=deadline_after(timeout_seconds, now=start))


def polled(state: State, name: str, status: str, **values: Any) -> State:
    """:func:`with_section` that also counts one more poll of the section's wait loop."""
    return with_section(state, name, status=status, polls=int((state.get(name) or {}).get("polls", 0)) + 1, **values)
