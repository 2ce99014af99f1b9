"""The handlers' settings, made from the config at synth time (see ``lambda_handlers/settings.py``)."""

from __future__ import annotations

from lambda_handlers.settings import Compilation, Device, Metric, Model, Settings, Timing, Training
from panopipe.config import PipelineConfig
from panopipe.naming import resource_prefix


def handler_settings(config: PipelineConfig) -> Settings:
    """Everything the step handlers need to know from ``config``, as one typed object."""
    training, model, compilation, runs = config.training, config.model, config.compilation, config.pipeline
    platform = compilation.target_platform
    return Settings(
        prefix=resource_prefix(config.project, config.environment),
        model=Model(
            name=model.name,
            task=model.task,
            framework=model.framework.value,
            framework_version=model.framework_version,
            input_name=model.input_name,
            input_shape=tuple(model.input_shape),
            classes=tuple(model.classes),
        ),
        training=Training(
            mode=training.mode,
            instance_type=training.instance_type,
            instance_count=training.instance_count,
            volume_size_gb=training.volume_size_gb,
            spot=training.spot,
            max_runtime_seconds=training.max_runtime_seconds,
            max_wait_seconds=training.effective_max_wait_seconds or training.max_runtime_seconds,
            hyperparameters={k: _text(v) for k, v in training.hyperparameters.items()},
            metric=Metric(training.metric.name, training.metric.threshold, training.metric.goal),
            entry_point=training.program,
        ),
        compilation=Compilation(
            max_runtime_seconds=compilation.max_runtime_seconds,
            target_device=compilation.target_device if platform is None else None,
            target_platform=(
                {"Os": platform.os, "Arch": platform.arch, "Accelerator": platform.accelerator} if platform else None
            ),
            compiler_options=dict(platform.compiler_options) if platform else None,
        ),
        devices=tuple(Device(id=d.id, name=d.name) for d in config.devices),
        timing=Timing(
            poll_seconds=runs.poll_seconds,
            training_timeout_seconds=config.training_timeout_seconds,
            compilation_timeout_seconds=runs.compilation_timeout_seconds,
            registration_timeout_seconds=runs.registration_timeout_seconds,
            deployment_timeout_seconds=runs.deployment_timeout_seconds,
        ),
        keep_package_versions=runs.keep_package_versions,
    )


def _text(value: str | int | float | bool) -> str:
    """SageMaker hyperparameters are strings; booleans as the algorithms spell them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
