"""What the step functions are told at deploy time, and the names it travels under.

Values known at synth time travel as one JSON document in :data:`STEP_SETTINGS`: the config's own
sections, dumped from the pydantic model by ``panopipe.config.step_settings`` (the one serializer)
and read here into frozen dataclasses by :func:`parse` (the one parser, strict both ways: a field
missing on either side fails the round-trip test of every stage's config). Values CloudFormation
resolves (bucket names, role ARNs, the training image URI) travel as variables of their own,
named here once for the constructs that set them and the handlers that read them.

Standard library only (no pydantic in Lambda).
"""

from __future__ import annotations

import dataclasses
import json
import os
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

DATA_BUCKET = "DATA_BUCKET"
ARTIFACTS_BUCKET = "ARTIFACTS_BUCKET"
ARTIFACTS_KEY_ARN = "ARTIFACTS_KEY_ARN"
SAGEMAKER_ROLE_ARN = "SAGEMAKER_ROLE_ARN"
RUNTIME_ROLE_ARN = "RUNTIME_ROLE_ARN"
TRAINING_IMAGE = "TRAINING_IMAGE"
TRAINING_SOURCE = "TRAINING_SOURCE"  # script mode: s3:// URI of the source archive the stack uploaded
PROCESSING_IMAGE = "PROCESSING_IMAGE"  # the data preparation job's image (a framework image with Pillow)
PREPARATION_SCRIPT = "PREPARATION_SCRIPT"  # s3:// URI of processing/prepare.py as the stack uploaded it
TOPIC_ARN = "TOPIC_ARN"
STATE_MACHINE_ARN = "STATE_MACHINE_ARN"
MODEL_PACKAGE_NAME = "MODEL_PACKAGE_NAME"
CODE_PACKAGE_NAME = "CODE_PACKAGE_NAME"
MANIFEST_TEMPLATE_KEY = "MANIFEST_TEMPLATE_KEY"
STEP_SETTINGS = "STEP_SETTINGS"


class MissingSetting(RuntimeError):
    """A variable the construct should have set is absent: a deployment fault, not bad input."""


def env(name: str) -> str:
    """The variable's value, or a clear error naming it."""
    value = os.environ.get(name)
    if not value:
        raise MissingSetting(f"environment variable {name} is not set; redeploy the pipeline stack")
    return value


# --- the config, as the handlers see it (mirrors panopipe.config.schema) --------------------------


@dataclass(frozen=True)
class Model:
    """Config ``model``: what the pipeline trains or receives, and how the appliance calls it."""

    name: str
    task: str
    framework: str
    framework_version: str
    input_name: str
    input_shape: tuple[int, ...]
    precision: str
    classes: tuple[str, ...]
    input_scaling: str | None  # None: by training mode (the application's graph parameter says which)


@dataclass(frozen=True)
class Metric:
    """Config ``training.metric``: the evaluation gate."""

    name: str
    threshold: float
    goal: Literal["maximize", "minimize"]

    def passes(self, value: float) -> bool:
        """True when ``value`` meets the gate in the configured direction."""
        return value >= self.threshold if self.goal == "maximize" else value <= self.threshold


@dataclass(frozen=True)
class MetricDefinition:
    """Config ``training.metric_definitions[]``: a metric SageMaker reads from the log (one regex group)."""

    name: str
    regex: str


@dataclass(frozen=True)
class Training:
    """Config ``training``; the image URI comes from :data:`TRAINING_IMAGE`."""

    mode: Literal["builtin", "script"]
    algorithm: str | None
    entry_point: str | None
    source_dir: str | None
    program: str | None  # script mode: the entry point's path inside the source archive
    instance_type: str
    instance_count: int
    volume_size_gb: int
    spot: bool
    max_runtime_seconds: int
    max_wait_seconds: int | None
    effective_max_wait_seconds: int | None
    hyperparameters: dict[str, str | int | float | bool]
    metric: Metric
    metric_definitions: tuple[MetricDefinition, ...]  # script mode; empty: the gate metric as <name>=<value>
    label_attribute: str  # a manifest data set's label attribute (with source-ref: the AttributeNames)


@dataclass(frozen=True)
class Preparation:
    """Config ``preparation``: the data preparation Processing job (raw image data sets only)."""

    enabled: bool
    variations_per_image: int
    variation_kinds: tuple[str, ...]
    validation_fraction: float
    seed: int
    min_images_per_class: int
    min_image_side: int
    instance_type: str
    volume_size_gb: int
    max_runtime_seconds: int

    @property
    def timeout_seconds(self) -> int:
        """The wait loop's timeout (mirrors ``PreparationConfig.timeout_seconds``)."""
        return self.max_runtime_seconds + 600


@dataclass(frozen=True)
class TargetPlatform:
    """Config ``compilation.target_platform``."""

    os: str
    arch: str
    accelerator: str
    compiler_options: dict[str, str]


@dataclass(frozen=True)
class Compilation:
    """Config ``compilation``: the Neo gate, a target device xor a target platform."""

    target_device: str | None
    target_platform: TargetPlatform | None
    max_runtime_seconds: int


@dataclass(frozen=True)
class Device:
    """Config ``devices[]``: an appliance by id or name, or a tag group (names and tags: ListDevices)."""

    id: str | None
    name: str | None
    tags: dict[str, str] | None

    @property
    def label(self) -> str:
        """How messages and S3 keys name the device (a tag group: its tags)."""
        if self.tags is not None:
            return "tags:" + ",".join(f"{k}={v}" for k, v in sorted(self.tags.items()))
        return self.id or self.name or "?"


@dataclass(frozen=True)
class Runs:
    """Config ``runs``: polling and timeouts of the wait loops (seconds), trigger prefix, versions kept."""

    dataset_prefix: str
    schedule: str | None
    poll_seconds: int
    training_timeout_seconds: int | None
    compilation_timeout_seconds: int
    registration_timeout_seconds: int
    deployment_timeout_seconds: int
    run_timeout_seconds: int | None
    keep_package_versions: int
    lock_wait_seconds: int
    lock_lease_seconds: int
    deploy_batch_size: int


@dataclass(frozen=True)
class StepSettings:
    """Everything the handlers know from the config."""

    prefix: str  # <project>-<env>; job and instance names start with it
    model: Model
    training: Training
    preparation: Preparation
    compilation: Compilation
    devices: tuple[Device, ...]
    runs: Runs
    training_timeout_seconds: int  # the training wait loop's effective timeout


T = TypeVar("T")


def parse(cls: type[T], data: Any, where: str = "settings") -> T:
    """``data`` (parsed JSON) as an instance of the dataclass ``cls``; strict: no field missing or extra."""
    return typing.cast(T, _value(cls, data, where))


def _value(kind: Any, data: Any, where: str) -> Any:
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if dataclasses.is_dataclass(kind):
        if not isinstance(data, dict):
            raise ValueError(f"{where}: expected an object, got {type(data).__name__}")
        hints = typing.get_type_hints(kind)
        names = [f.name for f in dataclasses.fields(kind)]
        unknown, missing = sorted(set(data) - set(names)), [n for n in names if n not in data]
        if unknown or missing:
            raise ValueError(f"{where}: unknown fields {unknown}, missing fields {missing}")
        return typing.cast(Any, kind)(**{n: _value(hints[n], data[n], f"{where}.{n}") for n in names})
    if origin in (types.UnionType, typing.Union):
        for option in args:
            try:
                return _value(option, data, where)
            except ValueError:
                continue
        raise ValueError(f"{where}: {data!r} is none of {kind}")
    if origin is tuple:
        if not isinstance(data, list):
            raise ValueError(f"{where}: expected a list, got {type(data).__name__}")
        return tuple(_value(args[0], item, f"{where}[{i}]") for i, item in enumerate(data))
    if origin is dict:
        if not isinstance(data, dict):
            raise ValueError(f"{where}: expected an object, got {type(data).__name__}")
        return {str(k): _value(args[1], v, f"{where}.{k}") for k, v in data.items()}
    if origin is Literal:
        if data not in args:
            raise ValueError(f"{where}: {data!r} is not one of {args}")
        return data
    if kind is type(None):
        if data is not None:
            raise ValueError(f"{where}: expected null")
        return None
    if kind is float and isinstance(data, int) and not isinstance(data, bool):
        return float(data)
    if not isinstance(data, kind) or (kind is int and isinstance(data, bool)):
        raise ValueError(f"{where}: expected {kind.__name__}, got {data!r}")
    return data


_current: StepSettings | None = None


def current() -> StepSettings:
    """The settings of this process, parsed once from :data:`STEP_SETTINGS`."""
    global _current
    if _current is None:
        _current = parse(StepSettings, json.loads(env(STEP_SETTINGS)))
    return _current


def install(replacement: StepSettings | None) -> None:
    """Replace the parsed settings (tests)."""
    global _current
    _current = replacement
