"""The configuration's schema: one frozen pydantic model per section, and the environment's root.

The ``training`` section is in :mod:`panopipe.config.training_schema`.

Each field carries its own rule (type, pattern, range, per-field validator); rules that span
sections live in :mod:`panopipe.config.cross_field`, and :mod:`panopipe.config.problems` turns
pydantic's errors into one line per problem (field, value, rule).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, ValidationInfo, computed_field, field_validator, model_validator

from lambda_handlers import domain
from panopipe.config.preparation_schema import PreparationConfig
from panopipe.config.schedule import check_schedule
from panopipe.config.section_base import ReadOnlyMapping, Section
from panopipe.config.training_schema import TrainingConfig
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

_NAME_PATTERN = r"^[a-zA-Z0-9_-]+$"  # Panorama NodeName / NodePackageName / DeviceName pattern
#: Keys that would put camera credentials in a config file (refused, and redacted from messages).
CREDENTIAL_FIELDS = frozenset(
    {"password", "username", "user", "credentials", "stream_url", "url", "secret", "secret_value"}
)


# --- sections -----------------------------------------------------------------------------------


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


class ModelConfig(Section):
    """The model the pipeline trains or takes, and how the appliance calls it."""

    name: Annotated[str, Field(pattern=_NAME_PATTERN, max_length=60)]
    task: Literal["image_classification", "object_detection"] = "image_classification"
    framework: Framework
    framework_version: str
    input_name: Annotated[str, Field(pattern=domain.INPUT_NAME_PATTERN, max_length=domain.INPUT_NAME_MAX)] = "data"
    input_shape: tuple[int, ...]
    precision: Literal["FP32", "FP16"] = "FP16"
    classes: Annotated[tuple[str, ...], Field(min_length=1)]
    #: How the application scales pixels for the model; None: what its training expects (see input_scaling).
    input_scaling: Literal["raw", "imagenet"] | None = None

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


class TargetPlatform(Section):
    """Neo's alternative to a named target device."""

    os: Literal["LINUX"] = "LINUX"
    arch: Literal["ARM64"] = "ARM64"
    accelerator: Literal["NVIDIA"] = "NVIDIA"
    compiler_options: ReadOnlyMapping[str] = Field(
        default_factory=lambda: {"gpu-code": "sm_72", "trt-ver": "7.1.3", "cuda-ver": "10.2"}
    )


class CompilationConfig(Section):
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


class DeviceConfig(Section):
    """Panorama appliances: one by id (``device-…``) or by its name, or every one carrying some tags.

    Names and tags are resolved with ListDevices when a run deploys, so a tag group follows the
    fleet as appliances are provisioned or retired, without a new deploy of the stacks.
    """

    id: Annotated[str, Field(pattern=_NAME_PATTERN, max_length=255)] | None = None
    name: Annotated[str, Field(pattern=_NAME_PATTERN, max_length=255)] | None = None
    tags: (
        Annotated[
            dict[
                Annotated[str, Field(min_length=1, max_length=128)],
                Annotated[str, Field(max_length=256)],
            ],
            Field(min_length=1, max_length=50),
        ]
        | None
    ) = None

    @model_validator(mode="after")
    def _id_name_or_tags(self) -> DeviceConfig:
        if sum(value is not None for value in (self.id, self.name, self.tags)) != 1:
            raise ValueError("give exactly one of id, name or tags for each device entry")
        return self

    @property
    def key(self) -> str:
        """The id, name or tag group (``tags:k=v,…``), whichever is set."""
        if self.tags is not None:
            return "tags:" + ",".join(f"{k}={v}" for k, v in sorted(self.tags.items()))
        return self.id or self.name or ""


class CameraConfig(Section):
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


class ApplicationConfig(Section):
    """The on-device application's parameters (graph value nodes, overridable per deployment)."""

    threshold: Annotated[float, Field(gt=0, le=1)] = 0.5
    classes_of_interest: Annotated[tuple[str, ...], AfterValidator(check_class_names)] = ()
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    hdmi_output: bool = True
    metrics_interval_seconds: Annotated[float, Field(ge=10, le=3600)] = 60
    package_version: Annotated[str, Field(pattern=r"^[0-9]+\.[0-9]+$")] = "1.0"


class StorageConfig(Section):
    """Retention of what the buckets keep."""

    noncurrent_version_days: Annotated[int, Field(ge=1, le=3650)] = 90
    access_log_days: Annotated[int, Field(ge=1, le=3650)] = 365


def _schedule(expression: str | None) -> str | None:
    if expression is not None:
        check_schedule(expression)
    return expression


class RunsConfig(Section):
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
    #: One run at a time registers and deploys: how long a run waits for the others' deployments.
    lock_wait_seconds: Annotated[int, Field(ge=60, le=7 * 24 * 3600)] = 7200
    #: How long the deployment lock outlives its holder's last step (a crashed run's lock expires).
    lock_lease_seconds: Annotated[int, Field(ge=1200, le=24 * 3600)] = 1800
    #: Devices one Deploy / Rollback call creates instances for (one create per second).
    deploy_batch_size: Annotated[int, Field(ge=1, le=60)] = 20


class EnvironmentConfig(Section):
    """The whole configuration of one environment."""

    project: Annotated[str, Field(pattern=r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$", min_length=2, max_length=20)]
    environment: Annotated[str, Field(pattern=r"^[a-z][a-z0-9]*$", min_length=2, max_length=10)]
    account: Annotated[str, Field(pattern=r"^[0-9]{12}$")] | None = None
    region: str | None = None
    termination_protection: bool | None = None
    model: ModelConfig
    training: TrainingConfig
    preparation: PreparationConfig = Field(default_factory=PreparationConfig)
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
    def input_scaling(self) -> str:
        """``model.input_scaling``, else raw 0-255 RGB for the built-in algorithm, ImageNet's for a script.

        The built-in image-classification network normalizes its own input (its first layer is a
        BatchNorm, ``bn_data``) and is trained on raw pixels; a script's model is assumed trained
        as torchvision/Gluon models are, on ``(pixel/255 - ImageNet mean) / std``.
        """
        if self.model.input_scaling is not None:
            return self.model.input_scaling
        return "raw" if self.training.mode == "builtin" else "imagenet"

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
        """Every wait loop at its timeout, the deployment twice (rollback), the lock wait: a run's worst case."""
        runs = self.runs
        preparation = self.preparation.timeout_seconds if self.preparation.enabled else 0
        return (
            preparation
            + self.training_timeout_seconds
            + runs.compilation_timeout_seconds
            + runs.registration_timeout_seconds
            + 2 * runs.deployment_timeout_seconds
            + runs.lock_wait_seconds
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
