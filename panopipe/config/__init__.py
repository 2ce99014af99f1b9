"""The typed configuration: one frozen object per environment, validated once in ``app.py``.

Validation happens in two phases so that every problem is reported at once: pydantic checks each
field (:mod:`.schema`), then :mod:`.cross_field` checks rules that span sections. Both produce
:class:`Problem` entries (field, value, rule) that :class:`ConfigError` prints one per line,
prefixed with the file's path (:mod:`.problems`). :mod:`.loader` reads the file; what the Lambda
steps are told of the config is derived from the same model (:mod:`.step_settings`).
"""

from panopipe.config.loader import DEFAULT_CONFIG_PATH, load_config, parse_config
from panopipe.config.problems import ConfigError, Problem
from panopipe.config.schema import DeviceConfig, EnvironmentConfig, Framework, ModelConfig
from panopipe.config.training_schema import TrainingConfig

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "ConfigError",
    "DeviceConfig",
    "EnvironmentConfig",
    "Framework",
    "ModelConfig",
    "Problem",
    "TrainingConfig",
    "load_config",
    "parse_config",
]
