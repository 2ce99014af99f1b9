"""The Panorama application the config describes: the :class:`ApplicationSpec` the manifest builders take."""

from __future__ import annotations

from panopipe.config.schema import EnvironmentConfig
from panorama_app.manifest.spec import ApplicationSpec, Parameter, model_input_parameters


def package_names(config: EnvironmentConfig) -> tuple[str, str]:
    """Model and code package names: unique per project and environment in an account."""
    prefix = config.prefix.replace("-", "_")
    return f"{prefix}_{config.model.name}"[:128], f"{prefix}_app"


def application_spec(config: EnvironmentConfig) -> ApplicationSpec:
    """Packages, model input, cameras and the code node's parameters, from the config."""
    model, app = config.model, config.application
    model_package, code_package = package_names(config)
    parameters = (
        Parameter("threshold", "float32", float(app.threshold), "Detection threshold", "Minimum confidence, 0-1."),
        Parameter(
            "classes_of_interest",
            "string",
            ",".join(app.classes_of_interest),
            "Classes of interest",
            "Comma-separated class names to count and draw; empty for all.",
        ),
        Parameter("log_level", "string", app.log_level, "Log level", "DEBUG, INFO, WARNING, ERROR or CRITICAL."),
        Parameter("device_id", "string", "", "Device", "The appliance's id, for metric dimensions."),
        Parameter("region", "string", config.region or "", "Region", "AWS Region of the metrics."),
        Parameter(
            "metrics_namespace",
            "string",
            config.metrics_namespace,
            "Metrics namespace",
            "CloudWatch namespace of the object counts.",
            overridable=False,
        ),
        Parameter(
            "metrics_interval",
            "float32",
            float(app.metrics_interval_seconds),
            "Metrics interval",
            "Seconds between two CloudWatch publications.",
        ),
        Parameter("task", "string", model.task, "Task", "object_detection or image_classification.", overridable=False),
        Parameter(
            "class_names",
            "string",
            ",".join(model.classes),
            "Class names",
            "Model outputs in order.",
            overridable=False,
        ),
        *model_input_parameters(model.framework.value, model.input_name, tuple(model.input_shape)),
        Parameter(
            "input_scaling",
            "string",
            config.input_scaling,
            "Input scaling",
            "raw: 0-255 RGB; imagenet: (pixel/255 - ImageNet mean) / std.",
            overridable=False,
        ),
    )
    return ApplicationSpec(
        model_package=model_package,
        code_package=code_package,
        framework=model.framework.value,
        framework_version=model.framework_version,
        input_name=model.input_name,
        input_shape=tuple(model.input_shape),
        precision=model.precision,
        cameras=tuple(c.name for c in config.cameras),
        parameters=parameters,
        hdmi_output=app.hdmi_output,
        package_version=app.package_version,
        description=f"{config.project} {config.environment}: {model.name}",
        instance_name_prefix=config.prefix,
    )
