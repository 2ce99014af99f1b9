"""The configuration's schema: one frozen pydantic model per section, and the environment's root.

Each field carries its own rule (type, pattern, range, per-field validator); rules that span
sections live in :mod:`panopipe.config.cross_field`, and :mod:`panopipe.config.problems` turns
pydantic's errors into one line per problem (field, value, rule).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from enum import StrEnum
from pathlib import PurePosixPath, PureWindowsPath
from types import MappingProxyType
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    computed_field,
    field_validator,
    model_validator,
)
from pydantic.functional_serializers import PlainSerializer

from lambda_handlers import domain
from panopipe.config.schedule import check_schedule
from panopipe.naming import PANORAMA_REGIONS, bucket_name, resource_prefix

# --- domain tables ------------------------------------------------------------------------------


class Framework(StrEnum):
    """Frameworks that both SageMaker Neo (edge targets) and Panorama accept."""

    MXNET = "MXNET"
    PYTORCH = "PYTORCH"
    TENSORFLOW = "TENSORFLOW"


#: Framework versions SageMaker Neo compiles for the appliance (the table the handlers use too).
NEO_EDGE_FRAMEWORK_VERSIONS: dict[Framework, tuple[str, ...]] = {
    Framework(k): v for k, v in domain.NEO_EDGE_FRAMEWORK_VERSIONS.items()
}
NHWC_FRAMEWORKS = frozenset(Framework(k) for k in domain.NHWC_FRAMEWORKS)

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

#: Metrics each built-in algorithm emits (its final values are what the gate reads). Source for
#: image-classification: the SageMaker developer guide, "Tune an Image Classification Model"
#: (IC-tuning, section "Metrics Computed by the Image Classification Algorithm") documents
#: validation:accuracy (maximize, "the ratio of the number of correct predictions to the total
#: number of predictions"); the algorithm's own metric definitions, listed for its training jobs
#: in the SageMaker console and CloudWatch, add train:accuracy and the per-epoch
#: train:accuracy:epoch and validation:accuracy:epoch. All four are ratios (0-1).
BUILTIN_METRICS: dict[str, tuple[str, ...]] = {
    "image-classification": (
        "validation:accuracy",
        "train:accuracy",
        "validation:accuracy:epoch",
        "train:accuracy:epoch",
    ),
}

#: Words that make a metric a ratio, 0 to 1 (``validation:accuracy``, ``val_acc``, ``mAP50``,
#: ``test/f1``, ``mean_iou``): a long word anywhere in the name, or a short one as a whole word of it
#: (words split at anything but letters and digits, trailing digits ignored, case ignored). A name
#: with the word ``loss`` is not a ratio; one with ``percent`` or ``pct`` is a percentage (0-100).
RATIO_WORDS = ("accuracy", "precision", "recall", "jaccard", "dice")
RATIO_SHORT_WORDS = frozenset({"acc", "f1", "fscore", "map", "ap", "auc", "iou", "miou"})
PERCENT_WORDS = frozenset({"percent", "pct"})


def metric_scale(name: str) -> float | None:
    """The upper bound of a metric known by its name to be a ratio (1) or a percentage (100), else None."""
    lowered = name.lower()
    words = re.findall(r"[a-z0-9]+", lowered)
    if "loss" in words:
        return None
    ratio = any(w in lowered for w in RATIO_WORDS) or any(
        w in RATIO_SHORT_WORDS or w.rstrip("0123456789") in RATIO_SHORT_WORDS for w in words
    )
    if not ratio:
        return None
    return 100.0 if PERCENT_WORDS & set(words) else 1.0


_NAME_PATTERN = r"^[a-zA-Z0-9_-]+$"  # Panorama NodeName / NodePackageName / DeviceName pattern
#: Keys that would put camera credentials in a config file (refused, and redacted from messages).
CREDENTIAL_FIELDS = frozenset(
    {"password", "username", "user", "credentials", "stream_url", "url", "secret", "secret_value"}
)


@functools.cache
def training_instance_types() -> frozenset[str]:
    """SageMaker's ``TrainingInstanceType`` enum, read from botocore's service model (offline)."""
    from botocore.loaders import Loader

    model = Loader().load_service_model("sagemaker", "service-2")
    return frozenset(model["shapes"]["TrainingInstanceType"]["enum"])


def instance_family(instance_type: str) -> str:
    """The family of ``ml.<family>.<size>`` (e.g. ``p3``), or "" for anything else."""
    parts = instance_type.split(".")
    return parts[1] if len(parts) == 3 and parts[0] == "ml" else ""


V = TypeVar("V")
#: A frozen model's mapping field: read-only after validation, a plain dict when dumped.
ReadOnlyMapping = Annotated[Mapping[str, V], AfterValidator(lambda v: MappingProxyType(dict(v))), PlainSerializer(dict)]


# --- sections -----------------------------------------------------------------------------------


class _Section(BaseModel):
    # allow_inf_nan=False: .nan and .inf are refused in every number (thresholds, hyperparameters).
    model_config = ConfigDict(frozen=True, extra="forbid", use_enum_values=False, allow_inf_nan=False)


#: What the device splits the comma-joined class lists on (the graph's class_names and
#: classes_of_interest parameters), and strips from each name.
CLASS_SEPARATOR = ","


def check_class_names(names: tuple[str, ...]) -> tuple[str, ...]:
    """Names the device gets back unchanged after joining with :data:`CLASS_SEPARATOR` and splitting."""
    if any(not n.strip() for n in names):
        raise ValueError("class names must not be blank")
    separated = [n for n in names if CLASS_SEPARATOR in n]
    if separated:
        raise ValueError(
            f"class names must not contain a comma: the device receives them comma-joined and would split "
            f"{separated[0]!r} into several"
        )
    padded = [n for n in names if n != n.strip()]
    if padded:
        raise ValueError(
            f"class names must not start or end with whitespace: the device strips it, so {padded[0]!r} would not match"
        )
    return names


class ModelConfig(_Section):
    """The model the pipeline trains or takes, and how the appliance calls it."""

    name: Annotated[str, Field(pattern=_NAME_PATTERN, max_length=60)]
    task: Literal["image_classification", "object_detection"] = "image_classification"
    framework: Framework
    framework_version: str
    input_name: Annotated[str, Field(pattern=domain.INPUT_NAME_PATTERN, max_length=domain.INPUT_NAME_MAX)] = "data"
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
        framework = info.data.get("framework")
        problem = domain.layout_problem(shape, framework.value if framework else None)
        if problem:
            raise ValueError(problem)
        return shape

    @field_validator("classes")
    @classmethod
    def _unique_classes(cls, classes: tuple[str, ...]) -> tuple[str, ...]:
        duplicates = sorted({c for c in classes if classes.count(c) > 1})
        if duplicates:
            raise ValueError(f"class names must be unique; repeated: {', '.join(duplicates)}")
        return check_class_names(classes)


class MetricGate(_Section):
    """The evaluation gate: a training metric and the value it must reach."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_:./-]+$", max_length=255)]
    threshold: float
    goal: Literal["maximize", "minimize"] = "maximize"

    @field_validator("threshold")
    @classmethod
    def _on_the_metric_scale(cls, threshold: float, info: ValidationInfo) -> float:
        name = info.data.get("name")
        scale = metric_scale(name) if name else None
        if scale is not None and not 0 <= threshold <= scale:
            kind = "a ratio" if scale == 1 else "a percentage"
            hint = f": write {threshold / 100:g} for {threshold:g} %" if scale == 1 and 1 < threshold <= 100 else ""
            raise ValueError(f"{name} is {kind}, so the threshold must lie within 0 and {scale:g}{hint}")
        return threshold


class MetricDefinition(_Section):
    """A metric SageMaker reads from the training log (its ``MetricDefinitions``): the regex's one group."""

    name: Annotated[str, Field(min_length=1, max_length=255, pattern=r"^.+$")]
    regex: Annotated[str, Field(min_length=1, max_length=500)]

    @field_validator("regex")
    @classmethod
    def _one_group(cls, regex: str) -> str:
        try:
            groups = re.compile(regex).groups
        except re.error as err:
            raise ValueError(f"is not a valid regular expression: {err}") from None
        if groups != 1:
            raise ValueError(f"must have exactly one capture group, around the value (it has {groups})")
        return regex


def _relative_path(path: str) -> str:
    """A path inside the repository: relative, with / separators and no .. component."""
    if "\\" in path:
        raise ValueError("use / as the path separator")
    if PurePosixPath(path).is_absolute() or PureWindowsPath(path).drive or path.startswith("~"):
        raise ValueError("must be relative to the project root, not an absolute path")
    if ".." in PurePosixPath(path).parts:
        raise ValueError("must stay inside the project: no .. in the path")
    return path


class TrainingConfig(_Section):
    """How SageMaker trains the model."""

    mode: Literal["builtin", "script"]
    algorithm: str | None = None
    entry_point: Annotated[str, Field(min_length=1), AfterValidator(_relative_path)] | None = None
    source_dir: Annotated[str, Field(min_length=1), AfterValidator(_relative_path)] | None = None
    instance_type: str = "ml.p3.2xlarge"
    instance_count: Annotated[int, Field(ge=1, le=100)] = 1
    volume_size_gb: Annotated[int, Field(ge=1, le=16384)] = 50
    spot: bool = True
    max_runtime_seconds: Annotated[int, Field(ge=60, le=28 * 24 * 3600)] = 4 * 3600
    max_wait_seconds: Annotated[int, Field(ge=60, le=28 * 24 * 3600)] | None = None
    hyperparameters: ReadOnlyMapping[str | int | float | bool] = Field(default_factory=dict, validate_default=True)
    metric: MetricGate
    metric_definitions: Annotated[tuple[MetricDefinition, ...], Field(max_length=40)] = ()
    #: The Ground Truth attribute that holds each image's class in a manifest data set (AttributeNames).
    label_attribute: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]+$", max_length=256)] = "class"

    @field_validator("metric_definitions")
    @classmethod
    def _unique_metric_names(cls, definitions: tuple[MetricDefinition, ...]) -> tuple[MetricDefinition, ...]:
        names = [d.name for d in definitions]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"metric names must be unique; repeated: {', '.join(repeated)}")
        return definitions

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
        families = sorted({instance_family(t) for t in known})
        family = instance_family(instance_type)
        if not family:
            raise ValueError("instance types look like ml.<family>.<size>, e.g. ml.p3.2xlarge")
        if family not in families:
            raise ValueError(
                f"unknown instance type family {family!r} (SageMaker training families: {', '.join(families)})"
            )
        sizes = sorted(t.split(".")[2] for t in known if instance_family(t) == family)
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

    @computed_field  # type: ignore[prop-decorator]
    @property
    def program(self) -> str | None:
        """Script mode: the entry point's path inside the archived directory (``sagemaker_program``)."""
        if self.mode != "script" or self.entry_point is None:
            return None
        return self.entry_point if self.source_dir else PurePosixPath(self.entry_point).name

    @computed_field  # type: ignore[prop-decorator]
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
    compiler_options: ReadOnlyMapping[str] = Field(
        default_factory=lambda: {"gpu-code": "sm_72", "trt-ver": "7.1.3", "cuda-ver": "10.2"}
    )


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
            credentials = sorted(set(data) & CREDENTIAL_FIELDS)
            if credentials:
                raise ValueError(
                    f"camera credentials never go in config files ({', '.join(credentials)}): "
                    "store them in AWS Secrets Manager and give its name as secret_name"
                )
        return data


class ApplicationConfig(_Section):
    """The on-device application's parameters (graph value nodes, overridable per deployment)."""

    threshold: Annotated[float, Field(gt=0, le=1)] = 0.5
    classes_of_interest: Annotated[tuple[str, ...], AfterValidator(check_class_names)] = ()
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    hdmi_output: bool = True
    metrics_interval_seconds: Annotated[float, Field(ge=10, le=3600)] = 60
    package_version: Annotated[str, Field(pattern=r"^[0-9]+\.[0-9]+$")] = "1.0"


class StorageConfig(_Section):
    """Retention of what the buckets keep."""

    noncurrent_version_days: Annotated[int, Field(ge=1, le=3650)] = 90
    access_log_days: Annotated[int, Field(ge=1, le=3650)] = 365


def _schedule(expression: str | None) -> str | None:
    if expression is not None:
        check_schedule(expression)
    return expression


class RunsConfig(_Section):
    """How pipeline runs start, how often their wait loops poll, and how long each may take."""

    dataset_prefix: Annotated[str, Field(pattern=r"^([A-Za-z0-9!_.*'()-]+/)+$", max_length=256)] = (
        domain.DEFAULT_DATASET_PREFIX
    )
    schedule: Annotated[str | None, AfterValidator(_schedule)] = None
    poll_seconds: Annotated[int, Field(ge=1, le=3600)] = 60
    training_timeout_seconds: Annotated[int, Field(ge=60, le=60 * 24 * 3600)] | None = None
    compilation_timeout_seconds: Annotated[int, Field(ge=60, le=24 * 3600)] = 1800
    registration_timeout_seconds: Annotated[int, Field(ge=60, le=24 * 3600)] = 1800
    deployment_timeout_seconds: Annotated[int, Field(ge=60, le=24 * 3600)] = 3600
    run_timeout_seconds: Annotated[int, Field(ge=300, le=365 * 24 * 3600)] | None = None
    keep_package_versions: Annotated[int, Field(ge=1, le=20)] = 5


class EnvironmentConfig(_Section):
    """The whole configuration of one environment."""

    project: Annotated[str, Field(pattern=r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$", min_length=2, max_length=20)]
    environment: Annotated[str, Field(pattern=r"^[a-z][a-z0-9]*$", min_length=2, max_length=10)]
    account: Annotated[str, Field(pattern=r"^[0-9]{12}$")] | None = None
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
    runs: RunsConfig = Field(default_factory=RunsConfig)

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

    @computed_field  # type: ignore[prop-decorator]
    @property
    def training_timeout_seconds(self) -> int:
        """How long the training wait loop may last: configured, or the job's own limit + 30 min."""
        if self.runs.training_timeout_seconds is not None:
            return self.runs.training_timeout_seconds
        limit = self.training.effective_max_wait_seconds or self.training.max_runtime_seconds
        return limit + 1800

    @property
    def minimum_run_seconds(self) -> int:
        """Every wait loop at its timeout, the deployment twice (rollback): a run's worst case."""
        runs = self.runs
        return (
            self.training_timeout_seconds
            + runs.compilation_timeout_seconds
            + runs.registration_timeout_seconds
            + 2 * runs.deployment_timeout_seconds
        )

    @property
    def run_timeout_seconds(self) -> int:
        """The whole execution's timeout: configured, or the worst case of its loops + 10 min."""
        return self.runs.run_timeout_seconds or self.minimum_run_seconds + 600

    @computed_field  # type: ignore[prop-decorator]
    @property
    def prefix(self) -> str:
        """``<project>-<env>``: the start of every stack, role, job and instance name."""
        return resource_prefix(self.project, self.environment)

    def bucket_name(self, purpose: str) -> str:
        """Name (or ``Fn::Sub`` template) of one of this environment's buckets."""
        return bucket_name(self.project, self.environment, purpose, self.account, self.region)
