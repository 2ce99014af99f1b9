"""The run's state: the JSON document each step receives whole and returns whole, updated.

The state machine's first state builds ``{"input": <execution input>, "run": {"name", "started"}}``;
each Lambda step adds or updates its own section and returns the whole document
(``ResultPath: "$"``). A Catch keeps the document and adds ``error`` ({Error, Cause}) and
``failed_step``. The sections are typed below, in the order they appear in a run.

Every wait loop's check step sets its section's ``status`` to one of the values below, and the
state machine's Choice reads only that: failures other than a failed deployment raise typed errors
(``errors.py``) instead, which the state machine catches by name.
"""

from __future__ import annotations

import time
from typing import Any, Literal, NotRequired, TypedDict, cast

IN_PROGRESS = "IN_PROGRESS"
SUCCEEDED = "SUCCEEDED"
FAILED = "FAILED"  # deployment and rollback only: the Choice routes to rollback / the failure report
TIMED_OUT = "TIMED_OUT"  # deployment and rollback only (other loops raise StepTimedOut)
SKIPPED = "SKIPPED"  # rollback of a device that never had a good deployment


class RunInfo(TypedDict):
    """``run``: the execution's name (the run's identity) and start time."""

    name: str
    started: str


class DatasetSource(TypedDict):
    """``source`` of a data set run: train and validation channels in the data bucket."""

    kind: Literal["dataset"]
    uri: str
    bucket: str
    prefix: str
    s3_data_type: str  # S3Prefix | AugmentedManifestFile (a Ground Truth manifest)
    channels: dict[str, str]  # channel name -> s3:// URI
    train_records: int | None  # samples in the train channel (built-in algorithm: num_training_samples)
    #: Raw images (``<class>/`` folders, or a Ground Truth manifest): the preparation step makes the
    #: channels (empty until then); the state machine's "Prepare first?" reads this flag.
    prepare: NotRequired[bool]
    raw_manifest: NotRequired[str]  # the raw form's manifest, relative to ``prefix``


class ModelSource(TypedDict):
    """``source`` of a run that deploys a model trained elsewhere."""

    kind: Literal["model"]
    s3_uri: str


class TrainingJobSource(TypedDict):
    """``source`` of a run that deploys the model of an existing training job."""

    kind: Literal["training_job"]
    job_name: str


Source = DatasetSource | ModelSource | TrainingJobSource


class ModelSection(TypedDict):
    """``model``: the raw artifact and how to read it (set by validate_input, or by check_training)."""

    s3_uri: str
    framework: str
    framework_version: str
    input_name: str
    input_shape: list[int]


class Loop(TypedDict, total=False):
    """What every wait loop's section holds: its status, deadline (epoch seconds) and poll count."""

    status: str
    deadline: int
    polls: int


class MetricResult(TypedDict):
    """The metric gate's verdict."""

    name: str
    value: float
    threshold: float
    goal: str


class PreparationSection(Loop, total=False):
    """``preparation``: the Processing job, where it writes, and its report's counts."""

    job_name: str
    output_uri: str  # s3://<artifacts>/runs/<run>/prepared/
    images_before: dict[str, int]
    images_after: dict[str, dict[str, int]]
    imbalance_ratio: float | None
    rejected: int


class TrainingSection(Loop, total=False):
    """``training``: the job, its secondary status while it runs, and the gate's metric."""

    job_name: str
    secondary_status: str | None
    metric: MetricResult


class CompilationSection(Loop, total=False):
    """``compilation``: the Neo job and the compiled model's location."""

    job_name: str
    output_uri: str


class PackageRef(TypedDict):
    """A registered patch version of a package: where it is, and how a graph pins it."""

    package_id: str
    package_name: str
    package_version: str
    patch_version: str


class PackageVersion(PackageRef):
    """The model package's registered patch version, and the sha256 of its asset and descriptor."""

    model_sha256: str
    descriptor_sha256: str


class PackageSection(Loop, PackageVersion, total=False):
    """``package``: the registered patch version of the model package (``package_registration``)."""

    deregistered: list[str]


class DeviceRecord(TypedDict):
    """One device of a deployment or rollback."""

    device: str  # the config's label: id or name
    device_id: str
    instance_id: str | None
    replaced: str | None
    status: str  # IN_PROGRESS | SUCCEEDED | FAILED | TIMED_OUT | SKIPPED
    status_description: str


class DevicesSection(Loop, total=False):
    """``deployment`` and ``rollback``: one record per device."""

    devices: list[DeviceRecord]


class DataVersion(TypedDict):
    """How new a run's data is: ``time`` (ISO 8601) then ``id`` order runs (``deployment_lock``)."""

    time: str
    id: str
    source: str  # where the time comes from: the data set's marker, or the run's start


class LockSection(Loop, total=False):
    """``lock``: the environment's deployment lock as this run saw it (``deployment_lock``)."""

    data: DataVersion
    holder: str | None
    holder_since: float
    reason: str  # SUPERSEDED: why nothing was deployed
    superseded_by: dict[str, str]


class BatchDevice(TypedDict):
    """A device of a deployment batch: its label and id (``fleet``)."""

    device: str
    device_id: str


class Batch(TypedDict):
    """One Map iteration of the deployment: its devices, and when its first create may go."""

    index: int
    start_at: str  # ISO 8601: batches are staggered so creates keep to the API's pace
    devices: list[BatchDevice]


class BatchResult(TypedDict, total=False):
    """What one iteration of the deployment Map hands back: its devices' final records.

    A batch whose step failed for good hands back the error, and its devices' records so far
    (``deployment``) or, when Deploy itself failed, the devices it had (``undeployed``).
    """

    deployment: list[DeviceRecord]
    rollback: list[DeviceRecord]
    undeployed: list[BatchDevice]
    error: CaughtError


class FleetSection(TypedDict, total=False):
    """``fleet``: the deployment's plan (batches) and, after the Map, the batches' results."""

    devices: int
    batch_size: int
    batches: list[Batch]
    results: list[BatchResult]
    counts: dict[str, int]


class CaughtError(TypedDict):
    """What a Catch adds: the error's name and its cause (the Lambda error document as JSON)."""

    Error: str
    Cause: str


class Summary(TypedDict, total=False):
    """``summary``: what notify sent; the final Fail state reads ``error`` and ``reason``."""

    status: str
    error: str | None
    reason: str
    run: str | None
    source: str
    failed_step: str | None
    instances: dict[str, str | None]
    rollback: str
    counts: dict[str, int]  # a fleet's devices per outcome (``fleet.counts``)
    message_id: str


class RunState(TypedDict, total=False):
    """The whole document."""

    input: Any
    run: RunInfo
    source: Source
    model: ModelSection
    code_package: PackageRef
    preparation: PreparationSection
    training: TrainingSection
    compilation: CompilationSection
    package: PackageSection
    lock: LockSection
    fleet: FleetSection
    batch: Batch  # inside a deployment Map iteration only
    deployment: DevicesSection
    rollback: DevicesSection
    summary: Summary
    error: CaughtError
    failed_step: str
    notify_error: CaughtError


#: Sections that run a wait loop.
LoopName = Literal["preparation", "training", "compilation", "lock", "package", "deployment", "rollback"]


def run_name(state: RunState) -> str:
    """The run's name, set by the state machine's first state."""
    return state["run"]["name"]


def deadline_after(seconds: int, now: float | None = None) -> int:
    """Epoch seconds ``seconds`` from now: stored in a section when its wait loop starts."""
    return int((time.time() if now is None else now) + seconds)


def past(deadline: int, now: float | None = None) -> bool:
    """True once a loop's deadline has passed."""
    return (time.time() if now is None else now) > deadline


def with_section(state: RunState, name: LoopName, **values: Any) -> RunState:
    """A copy of ``state`` whose section ``name`` is updated with ``values``."""
    section: dict[str, Any] = dict(cast("dict[str, Any]", state.get(name)) or {})
    section.update(values)
    updated: dict[str, Any] = {**state, name: section}
    return cast(RunState, updated)


def loop_started(state: RunState, name: LoopName, timeout_seconds: int, since: Any = None, **values: Any) -> RunState:
    """Section ``name`` entering its wait loop: IN_PROGRESS, no polls yet, a deadline from ``since``.

    ``since`` is when the awaited work began (a job's CreationTime, datetime or epoch seconds);
    None means now. A retried step that adopts an earlier job thus keeps that job's deadline.
    """
    start = since.timestamp() if hasattr(since, "timestamp") else since
    values.setdefault("status", IN_PROGRESS)
    return with_section(state, name, **values, polls=0, deadline=deadline_after(timeout_seconds, now=start))


def polled(state: RunState, name: LoopName, status: str, **values: Any) -> RunState:
    """:func:`with_section` that also counts one more poll of the section's wait loop."""
    polls = int(cast("dict[str, Any]", state.get(name) or {}).get("polls", 0))
    return with_section(state, name, status=status, polls=polls + 1, **values)
