"""The typed configuration: one frozen object per environment, validated once in ``app.py``.

Validation happens in two phases so that every problem is reported at once: pydantic checks each
field (types, patterns, per-field rules), then :func:`cross_field_problems` checks rules that span
sections. Both produce :class:`Problem` entries (field, value, rule) that :class:`ConfigError`
prints one per line, prefixed with the config file's path.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from lambda_handlers.frameworks import NEO_EDGE_FRAMEWORK_VERSIONS as NEO_VERSIONS
from lambda_handlers.frameworks import NHWC_FRAMEWORKS as NHWC
from panopipe.naming import BUCKET_PURPOSES, PANORAMA_REGIONS, BucketNameError, bucket_name

DEFAULT_CONFIG_PATH = "config/dev.yaml"

# --- domain tables ------------------------------------------------------------------------------


class Framework(StrEnum):
    """Frameworks that both SageMaker Neo (edge targets) and Panorama accept."""

    MXNET = "MXNET"
    PYTORCH = "PYTORCH"
    TENSORFLOW = "TENSORFLOW"


#: Framework versions SageMaker Neo compiles for the appliance, and the channel-last frameworks
#: (one table with the pipeline's input validation: ``lambda_handlers/frameworks.py``).
NEO_EDGE_FRAMEWORK_VERSIONS: dict[Framework, tuple[str, ...]] = {Framework(k): v for k, v in NEO_VERSIONS.items()}
NHWC_FRAMEWORKS = frozenset(Framework(k) for k in NHWC)

#: SageMaker built-in algorithms this pipeline can train with, and why others are refused.
BUILTIN_ALGORITHMS = ("image-classification",)
REFUSED_ALGORITHMS: dict[str, str] = {
    "object-detection": (
        "the built-in object-detection algorithm does not compile with SageMaker Neo for the "
        "appliance (operator _contrib_MultiBoxTarget); train a detector in script mode instead"
    ),
    "semantic-segmentation": "the built-in semantic-segmentation algorithm has no Panorama runtime support",
}

#: Families the built-in image-classification algorithm trains on (GPU only).
GPU_FAMILY_PREFIXES = ("p", "g")

_NAME_PATTERN = r"^[a-zA-Z0-9_-]+$"  # Panorama NodeName / NodePackageName / DeviceName pattern
_CREDENTIAL_FIELDS = frozenset(
    {"password", "username", "user", "credentials", "stream_url", "url", "secret", "secret_value"}
)


@functools.cache
def training_instance_types() -> frozenset[str]:
    """SageMaker's ``TrainingInstanceType`` enum, read from botocore's service model (offline)."""
    from botocore.loaders import Loader

    model = Loader().load_service_model("sagemaker", "service-2")
    return frozenset(model["shapes"]["TrainingInstanceType"]["enum"])


def _family(instance_type: str) -> str:
    parts = instance_type.split(".")
    return parts[1] if len(parts) == 3 and parts[0] == "ml" else ""


# --- sections -----------------------------------------------------------------------------------


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", use_enum_values=False)


class ModelConfig(_Section):
    """The model the pipeline trains or takes, and how the appliance calls it."""

    name: Annotated[str, Field(pattern=_NAME_PATTERN, max_length=60)]
    task: Literal["image_classification", "object_detection"] = "image_classification"
    framework: Framework
    framework_version: str
    input_name: Annotated[str, Field(pattern=r"^[a-zA-Z_][a-zA-Z0-9_:.]*$", max_length=64)] = "data"
    input_shape: tuple[int, ...]
    precision: Literal["FP32", "FP16"] = "FP16"
    classes: Annotated[tuple[str, ...], Field(min_length=1)]

    @field_validator("framework_version")
    @classmethod
    def _neo_version(cls, version: str, info: ValidationInfo) -> str:
        framework = info.data.get("framework")
        if framework is None:
            return version
        allowed = NEO_EDGE_FRAMEWORK_VERSIONS[framework]
        if version not in allowed:
            raise ValueError(
                f"SageMaker Neo compiles {framework.value} for the appliance only in versions {', '.join(allowed)}"
            )
        return version

    @field_validator("input_shape")
    @classmethod
    def _layout(cls, shape: tuple[int, ...], info: ValidationInfo) -> tuple[int, ...]:
        if len(shape) != 4:
            raise ValueError(f"must have 4 dimensions, [N, C, H, W] or [N, H, W, C]; got {len(shape)}")
        if any(dim <= 0 for dim in shape):
            raise ValueError("every dimension must be a positive integer")
        framework = info.data.get("framework")
        if framework is None:
            return shape
        if framework in NHWC_FRAMEWORKS:
            if shape[3] not in (1, 3):
                raise ValueError(f"{framework.value} takes NHWC input [N, H, W, C] with C = 1 or 3; got C = {shape[3]}")
        elif shape[1] not in (1, 3):
            hint = " (this looks like NHWC)" if shape[3] in (1, 3) else ""
            raise ValueError(f"{framework.value} takes NCHW input [N, C, H, W] with C = 1 or 3{hint}")
        return shape

    @field_validator("classes")
    @classmethod
    def _unique_classes(cls, classes: tuple[str, ...]) -> tuple[str, ...]:
        duplicates = sorted({c for c in classes if classes.count(c) > 1})
        if duplicates:
            raise ValueError(f"class names must be unique; repeated: {', '.join(duplicates)}")
        if any(not c.strip() for c in classes):
            raise ValueError("class names must not be blank")
        return classes


class MetricGate(_Section):
    """The evaluation gate: a training metric and the value it must reach."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_:./-]+$", max_length=255)]
    threshold: float
    goal: Literal["maximize", "minimize"] = "maximize"


class TrainingConfig(_Section):
    """How SageMaker trains the model."""

    mode: Literal["builtin", "script"]
    algorithm: str | None = None
    entry_point: str | None = None
    source_dir: str | None = None
    instance_type: str = "ml.p3.2xlarge"
    instance_count: Annotated[int, Field(ge=1, le=100)] = 1
    volume_size_gb: Annotated[int, Field(ge=1, le=16384)] = 50
    spot: bool = True
    max_runtime_seconds: Annotated[int, Field(ge=60, le=28 * 24 * 3600)] = 4 * 3600
    max_wait_seconds: Annotated[int, Field(ge=60, le=28 * 24 * 3600)] | None = None
    hyperparameters: Mapping[str, str | int | float | bool] = Field(default_factory=dict)
    metric: MetricGate

    @field_validator("hyperparameters", mode="after")
    @classmethod
    def _read_only_hyperparameters(cls, values: Mapping[str, Any]) -> Mapping[str, Any]:
        return MappingProxyType(dict(values))

    @field_validator("algorithm")
    @classmethod
    def _known_algorithm(cls, algorithm: str | None) -> str | None:
        if algorithm is None:
            return None
        if algorithm in REFUSED_ALGORITHMS:
            raise ValueError(REFUSED_ALGORITHMS[algorithm])
        if algorithm not in BUILTIN_ALGORITHMS:
            raise ValueError(f"supported built-in algorithms: {', '.join(BUILTIN_ALGORITHMS)}")
        return algorithm

    @field_validator("instance_type")
    @classmethod
    def _known_instance_type(cls, instance_type: str) -> str:
        known = training_instance_types()
        if instance_type in known:
            return instance_type
        families = sorted({_family(t) for t in known})
        family = _family(instance_type)
        if not family:
            raise ValueError("instance types look like ml.<family>.<size>, e.g. ml.p3.2xlarge")
        if family not in families:
            raise ValueError(
                f"unknown instance type family {family!r} (SageMaker training families: {', '.join(families)})"
            )
        sizes = sorted(t.split(".")[2] for t in known if _family(t) == family)
        raise ValueError(f"SageMaker does not train on this size of {family}; sizes: {', '.join(sizes)}")

    @field_validator("max_wait_seconds")
    @classmethod
    def _wait_covers_runtime(cls, wait: int | None, info: ValidationInfo) -> int | None:
        runtime = info.data.get("max_runtime_seconds")
        if wait is not None and runtime is not None and wait < runtime and info.data.get("spot", True):
            raise ValueError(f"managed spot training needs max_wait_seconds >= max_runtime_seconds ({runtime})")
        return wait

    @property
    def source_directory(self) -> str | None:
        """Script mode: the directory archived for the job (``source_dir``, else the entry point's)."""
        if self.mode != "script" or self.entry_point is None:
            return None
        return self.source_dir or str(PurePosixPath(self.entry_point).parent)

    @property
    def program(self) -> str | None:
        """Script mode: the entry point's path inside the archived directory (``sagemaker_program``)."""
        if self.mode != "script" or self.entry_point is None:
            return None
        return self.entry_point if self.source_dir else PurePosixPath(self.entry_point).name

    @property
    def effective_max_wait_seconds(self) -> int | None:
        """Spot jobs wait for capacity up to this long (default: twice the runtime)."""
        if not self.spot:
            return None
        return self.max_wait_seconds or min(2 * self.max_runtime_seconds, 28 * 24 * 3600)


class TargetPlatform(_Section):
    """Neo's alternative to a named target device."""

    os: Literal["LINUX"] = "LINUX"
    arch: Literal["ARM64"] = "ARM64"
    accelerator: Literal["NVIDIA"] = "NVIDIA"
    compiler_options: Mapping[str, str] = Field(
        default_factory=lambda: {"gpu-code": "sm_72", "trt-ver": "7.1.3", "cuda-ver": "10.2"}
    )

    @field_validator("compiler_options", mode="after")
    @classmethod
    def _read_only_options(cls, values: Mapping[str, str]) -> Mapping[str, str]:
        return MappingProxyType(dict(values))


class CompilationConfig(_Section):
    """The Neo compilation gate (the appliance is a Jetson AGX Xavier)."""

    target_device: Literal["jetson_xavier"] | None = "jetson_xavier"
    target_platform: TargetPlatform | None = None
    max_runtime_seconds: Annotated[int, Field(ge=60, le=24 * 3600)] = 900

    @model_validator(mode="after")
    def _one_target(self) -> CompilationConfig:
        """Exactly one target; giving only target_platform replaces the default device."""
        explicit_device = "target_device" in self.model_fields_set
        if self.target_platform is not None and not explicit_device:
            object.__setattr__(self, "target_device", None)
        elif self.target_platform is not None and self.target_device is not None:
            raise ValueError("give either target_device or target_platform, not both")
        if self.target_device is None and self.target_platform is None:
            raise ValueError("needs a Neo target: target_device (jetson_xavier) or target_platform")
        return self


class DeviceConfig(_Section):
    """A Panorama appliance, by id (``device-…``) or by its name in the account."""

    id: Annotated[str, Field(pattern=_NAME_PATTERN, max_length=255)] | None = None
    name: Annotated[str, Field(pattern=_NAME_PATTERN, max_length=255)] | None = None

    @model_validator(mode="after")
    def _id_or_name(self) -> DeviceConfig:
        if (self.id is None) == (self.name is None):
            raise ValueError("give exactly one of id or name for each device")
        return self

    @property
    def key(self) -> str:
        """The id or name, whichever is set."""
        return self.id or self.name or ""


class CameraConfig(_Section):
    """A camera node registered on the appliance; credentials live in Secrets Manager only."""

    name: Annotated[str, Field(pattern=_NAME_PATTERN, max_length=128)]
    secret_name: Annotated[str, Field(pattern=r"^[A-Za-z0-9/_+=.@-]+$", max_length=512)] | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_credentials(cls, data: Any) -> Any:
        if isinstance(data, dict):
            credentials = sorted(set(data) & _CREDENTIAL_FIELDS)
            if credentials:
                raise ValueError(
                    f"camera credentials never go in config files ({', '.join(credentials)}): "
                    "store them in AWS Secrets Manager and give its name as secret_name"
                )
        return data


class ApplicationConfig(_Section):
    """The on-device application's parameters (graph value nodes, overridable per deployment)."""

    threshold: Annotated[float, Field(gt=0, le=1)] = 0.5
    classes_of_interest: tuple[str, ...] = ()
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    hdmi_output: bool = True
    metrics_interval_seconds: Annotated[float, Field(ge=10, le=3600)] = 60
    package_version: Annotated[str, Field(pattern=r"^[0-9]+\.[0-9]+$")] = "1.0"


class StorageConfig(_Section):
    """Retention of what the buckets keep."""

    noncurrent_version_days: Annotated[int, Field(ge=1, le=3650)] = 90
    access_log_days: Annotated[int, Field(ge=1, le=3650)] = 365


_SCHEDULE_PATTERN = r"^(rate\(\d+ (minute|minutes|hour|hours|day|days)\)|cron\(\S+( \S+){5}\))$"


class RunsConfig(_Section):
    """How pipeline runs start, how often their wait loops poll, and how long each may take."""

    dataset_prefix: Annotated[str, Field(pattern=r"^([A-Za-z0-9!_.*'()-]+/)+$", max_length=256)] = "datasets/"
    schedule: Annotated[str, Field(pattern=_SCHEDULE_PATTERN)] | None = None
    poll_seconds: Annotated[int, Field(ge=1, le=3600)] = 60
    training_timeout_seconds: Annotated[int, Field(ge=60, le=60 * 24 * 3600)] | None = None
    compilation_timeout_seconds: Annotated[int, Field(ge=60, le=24 * 3600)] = 1800
    registration_timeout_seconds: Annotated[int, Field(ge=60, le=24 * 3600)] = 1800
    deployment_timeout_seconds: Annotated[int, Field(ge=60, le=24 * 3600)] = 3600
    run_timeout_seconds: Annotated[int, Field(ge=300, le=365 * 24 * 3600)] | None = None
    keep_package_versions: Annotated[int, Field(ge=1, le=20)] = 5


class PipelineConfig(_Section):
    """The whole configuration of one environment."""

    project: Annotated[str, Field(pattern=r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$", min_length=2, max_length=20)]
    environment: Annotated[str, Field(pattern=r"^[a-z][a-z0-9]*$", min_length=2, max_length=10)]
    account: Annotated[str, Field(pattern=r"^\d{12}$")] | None = None
    region: str | None = None
    termination_protection: bool | None = None
    model: ModelConfig
    training: TrainingConfig
    compilation: CompilationConfig = Field(default_factory=CompilationConfig)
    devices: Annotated[tuple[DeviceConfig, ...], Field(min_length=1)]
    cameras: Annotated[tuple[CameraConfig, ...], Field(min_length=1, max_length=8)]
    application: ApplicationConfig = Field(default_factory=ApplicationConfig)
    notification_email: Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+\.[a-zA-Z]{2,}$", max_length=254)] | None = None
    storage: StorageConfig = Field(default_factory=StorageConfig)
    pipeline: RunsConfig = Field(default_factory=RunsConfig)

    @field_validator("region")
    @classmethod
    def _panorama_region(cls, region: str | None) -> str | None:
        if region is not None and region not in PANORAMA_REGIONS:
            raise ValueError(f"AWS Panorama is available only in {', '.join(PANORAMA_REGIONS)}")
        return region

    @property
    def protect_stateful(self) -> bool:
        """Termination protection: on unless set, except for the ``dev`` environment."""
        if self.termination_protection is not None:
            return self.termination_protection
        return self.environment != "dev"

    @property
    def metrics_namespace(self) -> str:
        """CloudWatch namespace of the on-device application's metrics (scopes its runtime role)."""
        return f"PanoramaPipeline/{self.project}-{self.environment}"

    @property
    def training_timeout_seconds(self) -> int:
        """How long the training wait loop may last: configured, or the job's own limit + 30 min."""
        if self.pipeline.training_timeout_seconds is not None:
            return self.pipeline.training_timeout_seconds
        limit = self.training.effective_max_wait_seconds or self.training.max_runtime_seconds
        return limit + 1800

    @property
    def minimum_run_seconds(self) -> int:
        """Every wait loop at its timeout, the deployment twice (rollback): a run's worst case."""
        runs = self.pipeline
        return (
            self.training_timeout_seconds
            + runs.compilation_timeout_seconds
            + runs.registration_timeout_seconds
            + 2 * runs.deployment_timeout_seconds
        )

    @property
    def run_timeout_seconds(self) -> int:
        """The whole execution's timeout: configured, or the worst case of its loops + 10 min."""
        return self.pipeline.run_timeout_seconds or self.minimum_run_seconds + 600

    def bucket_name(self, purpose: str) -> str:
        """Name (or ``Fn::Sub`` template) of one of this environment's buckets."""
        return bucket_name(self.project, self.environment, purpose, self.account, self.region)


# --- errors and loading -------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One broken rule: where, what value, which rule."""

    field: str
    value: Any
    rule: str

    def __str__(self) -> str:
        shown = "<missing>" if self.value is _MISSING else repr(_short(self.value))
        return f"{self.field} = {shown}: {self.rule}"


_MISSING = object()


def _short(value: Any) -> Any:
    text = repr(value)
    return value if len(text) <= 80 else text[:77] + "..."


class ConfigError(Exception):
    """The configuration file is invalid; ``str()`` lists every problem, one per line."""

    def __init__(self, source: str, problems: Iterable[Problem]) -> None:
        self.source = source
        self.problems = tuple(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        noun = "problem" if len(self.problems) == 1 else "problems"
        super().__init__(f"invalid configuration {source} ({len(self.problems)} {noun}):\n{lines}")


def _location(loc: tuple[str | int, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "<root>"


#: Plain-words rules for pattern-checked fields (instead of the raw regular expression).
_PATTERN_RULES = {
    "project": "lower-case letters and digits in words joined by single hyphens, starting with a letter",
    "environment": "lower-case letters and digits, starting with a letter",
    "account": 'a 12-digit AWS account id, quoted ("123456789012")',
    "notification_email": "an e-mail address",
    "secret_name": "a Secrets Manager secret name (letters, digits and /_+=.@-)",
    "name": "letters, digits, - and _",
    "id": "letters, digits, - and _",
    "input_name": "a tensor name: letters, digits, _ . : starting with a letter or _",
    "package_version": '<major>.<minor>, quoted ("1.0")',
    "dataset_prefix": "an S3 key prefix of one or more folders, ending in / (e.g. datasets/)",
    "schedule": "an EventBridge schedule: rate(<n> minutes|hours|days) or cron(<6 fields>)",
}
_REDACTED = "<redacted>"
_URL_CREDENTIALS = re.compile(r"(\w+://)[^/@\s]+@")


def _redact(loc: tuple[str | int, ...], value: Any) -> Any:
    """Hide credentials that a user put where they do not belong, so no log ever shows them."""
    if isinstance(value, dict):
        return {k: (_REDACTED if k in _CREDENTIAL_FIELDS else _redact((*loc, k), v)) for k, v in value.items()}
    if isinstance(value, str):
        if loc and loc[0] == "cameras" and loc[-1] not in ("name", "secret_name"):
            return _REDACTED
        return _URL_CREDENTIALS.sub(r"\1<redacted>@", value)
    return value


def _problems_from(error: ValidationError, allowed_by_section: dict[str, list[str]]) -> list[Problem]:
    """One problem per broken field: union branches merged, follow-on errors of a parent dropped."""
    by_location: dict[tuple[str | int, ...], Problem] = {}
    for err in error.errors(include_url=False):
        raw_loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        kind = err["type"]
        # A union's branch names (str, int, ...) follow the real path: cut them off.
        loc = raw_loc
        while loc and isinstance(loc[-1], str) and loc[-1] in {"str", "int", "float", "bool", "tuple[str, ...]"}:
            loc = loc[:-1]
        message = err["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        value = err.get("input", _MISSING)
        if kind == "missing":
            value, message = _MISSING, "required field is missing"
        elif kind == "extra_forbidden":
            section = _location(tuple(p for p in loc[:-1] if not isinstance(p, int)))
            allowed = allowed_by_section.get(section, [])
            message = f"unknown field; allowed here: {', '.join(allowed)}"
        elif kind == "string_pattern_mismatch":
            rule = _PATTERN_RULES.get(str(loc[-1]), "")
            message = f"must be {rule}" if rule else message
        elif kind == "string_type" and isinstance(value, (int, float)):
            message = "must be text: quote the value in YAML"
        elif loc != raw_loc:
            message = "must be a string, a number or true/false"
        if loc in by_location:
            continue  # the first error of a location says it; union branches repeat it
        by_location[loc] = Problem(_location(loc), _redact(loc, value), message)
    # "too short" on a list whose items have their own errors is noise, not a second problem.
    return [
        p
        for loc, p in by_location.items()
        if not (
            p.rule.startswith("Tuple should have at least")
            and any(o[: len(loc)] == loc and o != loc for o in by_location)
        )
    ]


def _allowed_fields() -> dict[str, list[str]]:
    """Field names per section path, for 'unknown field' messages."""
    table: dict[str, list[str]] = {}

    def walk(model: type[BaseModel], path: str) -> None:
        table[path] = list(model.model_fields)
        for name, info in model.model_fields.items():
            for candidate in (info.annotation, *getattr(info.annotation, "__args__", ())):
                inner = getattr(candidate, "__args__", (candidate,))
                for typ in (candidate, *inner):
                    if isinstance(typ, type) and issubclass(typ, BaseModel):
                        walk(typ, f"{path}.{name}" if path else name)

    walk(PipelineConfig, "")
    table["<root>"] = table.pop("")
    return table


def cross_field_problems(config: PipelineConfig, base_dir: Path) -> list[Problem]:
    """Rules that span sections; run once every field is valid on its own."""
    problems: list[Problem] = []
    training, model = config.training, config.model
    if training.mode == "builtin":
        if training.algorithm is None:
            problems.append(
                Problem("training.algorithm", None, "builtin mode needs an algorithm, e.g. image-classification")
            )
        if training.entry_point is not None:
            problems.append(
                Problem("training.entry_point", training.entry_point, "only script mode takes an entry point")
            )
        if training.algorithm == "image-classification":
            if (model.framework, model.framework_version) != (Framework.MXNET, "1.8"):
                problems.append(
                    Problem(
                        "model.framework",
                        model.framework.value,
                        "the built-in image-classification algorithm produces MXNet 1.8 models; "
                        "set framework: MXNET and framework_version: '1.8'",
                    )
                )
            if model.task != "image_classification":
                problems.append(
                    Problem("model.task", model.task, "the image-classification algorithm trains a classifier")
                )
            if not _family(training.instance_type).startswith(GPU_FAMILY_PREFIXES):
                problems.append(
                    Problem(
                        "training.instance_type",
                        training.instance_type,
                        "the built-in image-classification algorithm trains on GPU instances only (ml.p*, ml.g*)",
                    )
                )
            declared = training.hyperparameters.get("num_classes")
            if declared is not None and str(declared) != str(len(model.classes)):
                problems.append(
                    Problem(
                        "training.hyperparameters.num_classes",
                        declared,
                        f"must equal the number of model.classes ({len(model.classes)})",
                    )
                )
    else:
        if training.algorithm is not None:
            problems.append(
                Problem("training.algorithm", training.algorithm, "script mode takes entry_point, not algorithm")
            )
        if training.entry_point is None:
            problems.append(
                Problem("training.entry_point", None, "script mode needs an entry point (a .py file in the repo)")
            )
        else:
            source = base_dir / (training.source_dir or ".")
            script = source / training.entry_point
            if not training.entry_point.endswith(".py") or not script.is_file():
                problems.append(
                    Problem(
                        "training.entry_point",
                        training.entry_point,
                        f"must be an existing .py file (looked for {script})",
                    )
                )
    unknown = sorted(set(config.application.classes_of_interest) - set(model.classes))
    if unknown:
        problems.append(
            Problem(
                "application.classes_of_interest", list(unknown), f"not in model.classes ({', '.join(model.classes)})"
            )
        )
    if not training.spot and training.max_wait_seconds is not None:
        problems.append(
            Problem("training.max_wait_seconds", training.max_wait_seconds, "applies only when spot is true")
        )
    for purpose in BUCKET_PURPOSES:
        try:
            config.bucket_name(purpose)
        except BucketNameError as err:
            hint = ""
            if config.region is None or config.account is None:
                hint = (
                    "; with account or region unset, names are checked for the longest possible "
                    "value (12 digits, ap-southeast-1): set them, or shorten the names"
                )
            problems.append(Problem("project", config.project, f"{err}{hint}"))
            break
    problems.extend(_timeout_problems(config))
    for field, items in (
        ("devices", [d.key for d in config.devices]),
        ("cameras", [c.name for c in config.cameras]),
    ):
        repeated = sorted({k for k in items if items.count(k) > 1})
        if repeated:
            problems.append(Problem(field, repeated, "each entry must be unique"))
    return problems


def _timeout_problems(config: PipelineConfig) -> list[Problem]:
    """Wait-loop timeouts must outlast the jobs they wait for, and the run must outlast them all."""
    problems: list[Problem] = []
    runs, training = config.pipeline, config.training
    job_limit = training.effective_max_wait_seconds or training.max_runtime_seconds
    if runs.training_timeout_seconds is not None and runs.training_timeout_seconds < job_limit:
        problems.append(
            Problem(
                "pipeline.training_timeout_seconds",
                runs.training_timeout_seconds,
                f"must be at least the training job's own limit ({job_limit} s: max_wait_seconds with spot, "
                "else max_runtime_seconds)",
            )
        )
    if runs.compilation_timeout_seconds < config.compilation.max_runtime_seconds:
        problems.append(
            Problem(
                "pipeline.compilation_timeout_seconds",
                runs.compilation_timeout_seconds,
                f"must be at least compilation.max_runtime_seconds ({config.compilation.max_runtime_seconds})",
            )
        )
    if runs.run_timeout_seconds is not None and runs.run_timeout_seconds < config.minimum_run_seconds:
        problems.append(
            Problem(
                "pipeline.run_timeout_seconds",
                runs.run_timeout_seconds,
                f"must cover every wait loop at its timeout, the deployment twice for a rollback "
                f"({config.minimum_run_seconds} s)",
            )
        )
    return problems


def parse_config(data: Any, source: str = "<config>", base_dir: Path | None = None) -> PipelineConfig:
    """Validate a mapping into a :class:`PipelineConfig` or raise :class:`ConfigError`."""
    if not isinstance(data, dict):
        raise ConfigError(source, [Problem("<root>", _short(data), "the file must hold a YAML mapping")])
    try:
        config = PipelineConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(source, _problems_from(err, _allowed_fields())) from None
    problems = cross_field_problems(config, base_dir or Path.cwd())
    if problems:
        raise ConfigError(source, problems)
    return config


def load_config(
    path: str | Path, base_dir: Path | None = None, overrides: Mapping[str, Any] | None = None
) -> PipelineConfig:
    """Read and validate one environment's YAML file (the only file read at synth time).

    ``overrides`` maps dotted field paths to values set on top of the file before validation
    (e.g. ``{"pipeline.poll_seconds": 2}`` for the local mode); the file's rules apply to them.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(str(path), [Problem("<file>", str(path), f"cannot be read: {err.strerror}")]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        raise ConfigError(
            str(path), [Problem("<file>", where, f"is not valid YAML: {getattr(err, 'problem', err)}")]
        ) from None
    if overrides and isinstance(data, dict):
        for dotted, value in overrides.items():
            *parents, leaf = dotted.split(".")
            node = data
            for part in parents:
                child = node.setdefault(part, {})
                if not isinstance(child, dict):
                    raise ConfigError(str(path), [Problem(dotted, value, f"{part} is not a section")])
                node = child
            node[leaf] = value
    return parse_config(data, str(path), base_dir or Path.cwd())
