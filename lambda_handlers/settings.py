"""What the handlers are told at deploy time, and the names it travels under.

The pipeline construct sets these environment variables and the handlers read them: the names are
defined once, here. Values known at synth time travel as one JSON document (:class:`Settings`,
built from the config by ``stacks/pipeline.py``); values CloudFormation resolves (bucket names,
role ARNs, the training image URI) travel as variables of their own.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

DATA_BUCKET = "DATA_BUCKET"
ARTIFACTS_BUCKET = "ARTIFACTS_BUCKET"
ARTIFACTS_KEY_ARN = "ARTIFACTS_KEY_ARN"
SAGEMAKER_ROLE_ARN = "SAGEMAKER_ROLE_ARN"
RUNTIME_ROLE_ARN = "RUNTIME_ROLE_ARN"
TRAINING_IMAGE = "TRAINING_IMAGE"
TRAINING_SOURCE = "TRAINING_SOURCE"  # script mode: s3:// URI of the source archive the stack uploaded
TOPIC_ARN = "TOPIC_ARN"
STATE_MACHINE_ARN = "STATE_MACHINE_ARN"
MODEL_PACKAGE_NAME = "MODEL_PACKAGE_NAME"
CODE_PACKAGE_NAME = "CODE_PACKAGE_NAME"
MANIFEST_TEMPLATE_KEY = "MANIFEST_TEMPLATE_KEY"
STEP_SETTINGS = "STEP_SETTINGS"

#: Variables each kind of step may read (the construct sets only these, per function).
ALL = (
    DATA_BUCKET,
    ARTIFACTS_BUCKET,
    ARTIFACTS_KEY_ARN,
    SAGEMAKER_ROLE_ARN,
    RUNTIME_ROLE_ARN,
    TRAINING_IMAGE,
    TRAINING_SOURCE,
    TOPIC_ARN,
    STATE_MACHINE_ARN,
    MODEL_PACKAGE_NAME,
    CODE_PACKAGE_NAME,
    MANIFEST_TEMPLATE_KEY,
    STEP_SETTINGS,
)


class MissingSetting(RuntimeError):
    """A variable the construct should have set is absent: a deployment fault, not bad input."""


def env(name: str) -> str:
    """The variable's value, or a clear error naming it."""
    value = os.environ.get(name)
    if not value:
        raise MissingSetting(f"environment variable {name} is not set; redeploy the pipeline stack")
    return value


@dataclass(frozen=True)
class Model:
    """The model the pipeline trains or receives (config ``model``)."""

    name: str
    task: str
    framework: str
    framework_version: str
    input_name: str
    input_shape: tuple[int, ...]
    classes: tuple[str, ...]


@dataclass(frozen=True)
class Metric:
    """The evaluation gate (config ``training.metric``)."""

    name: str
    threshold: float
    goal: str = "maximize"

    def passes(self, value: float) -> bool:
        """True when ``value`` meets the gate in the configured direction."""
        return value >= self.threshold if self.goal == "maximize" else value <= self.threshold


@dataclass(frozen=True)
class Training:
    """How to train (config ``training``); the image URI comes from :data:`TRAINING_IMAGE`."""

    mode: str  # builtin | script
    instance_type: str
    instance_count: int
    volume_size_gb: int
    spot: bool
    max_runtime_seconds: int
    max_wait_seconds: int
    hyperparameters: dict[str, str]
    metric: Metric
    entry_point: str | None = None  # script mode: the program's path inside the source archive


@dataclass(frozen=True)
class Compilation:
    """The Neo compatibility gate (config ``compilation``): a target device xor a target platform."""

    max_runtime_seconds: int
    target_device: str | None = None
    target_platform: dict[str, str] | None = None
    compiler_options: dict[str, str] | None = None


@dataclass(frozen=True)
class Device:
    """A Panorama appliance, by id or by name (names are resolved with ListDevices)."""

    id: str | None = None
    name: str | None = None

    @property
    def label(self) -> str:
        """How messages and S3 keys name the device."""
        return self.id or self.name or "?"


@dataclass(frozen=True)
class Timing:
    """Polling and timeouts of the wait loops (seconds); short in local mode, long in AWS."""

    poll_seconds: int = 60
    training_timeout_seconds: int = 6 * 3600
    compilation_timeout_seconds: int = 1800
    registration_timeout_seconds: int = 1800
    deployment_timeout_seconds: int = 3600


@dataclass(frozen=True)
class Settings:
    """Everything the handlers know from the config, as one JSON document."""

    prefix: str  # <project>-<env>; job and instance names start with it
    model: Model
    training: Training
    compilation: Compilation
    devices: tuple[Device, ...]
    timing: Timing = field(default_factory=Timing)
    keep_package_versions: int = 5

    def to_json(self) -> str:
        """Compact JSON for the environment (4 KB limit for all variables together)."""
        return json.dumps(asdict(self), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Settings:
        """Parse what :meth:`to_json` wrote."""
        raw: dict[str, Any] = json.loads(text)
        training = dict(raw["training"])
        training["metric"] = Metric(**training["metric"])
        model = dict(raw["model"])
        model["input_shape"] = tuple(model["input_shape"])
        model["classes"] = tuple(model["classes"])
        return cls(
            prefix=raw["prefix"],
            model=Model(**model),
            training=Training(**training),
            compilation=Compilation(**raw["compilation"]),
            devices=tuple(Device(**d) for d in raw["devices"]),
            timing=Timing(**raw["timing"]),
            keep_package_versions=raw["keep_package_versions"],
        )


_settings: Settings | None = None


def settings() -> Settings:
    """The settings of this process, parsed once from :data:`STEP_SETTINGS`."""
    global _settings
    if _settings is None:
        _settings = Settings.from_json(env(STEP_SETTINGS))
    return _settings


def use_settings(replacement: Settings | None) -> None:
    """Replace the parsed settings (tests)."""
    global _settings
    _settings = replacement
