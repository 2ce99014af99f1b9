"""Read one environment's YAML file, apply ``-c config.<field>=<value>`` overrides, validate.

The only file read at synth time; ``app.py`` calls :func:`load_config` once and passes the typed
object down. Relative paths inside the config (``training.entry_point``, ``training.source_dir``)
resolve against :data:`PROJECT_ROOT`, whatever the current directory, so ``cdk synth`` and
``panopipe validate`` agree (and the pipeline stack archives the same directory).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from panopipe.config.cross_field import cross_field_problems
from panopipe.config.problems import ConfigError, Problem, problems_from
from panopipe.config.schema import EnvironmentConfig
from panopipe.config.yaml_source import read_yaml
from panopipe.project import ROOT

DEFAULT_CONFIG_PATH = "config/dev.yaml"
#: The checkout's root (it holds pyproject.toml and cdk.json): where paths inside a config start.
PROJECT_ROOT = ROOT


def parse_config(data: Any, source: str = "<config>", base_dir: Path | None = None) -> EnvironmentConfig:
    """Validate a mapping into a :class:`EnvironmentConfig` or raise :class:`ConfigError`.

    ``base_dir``: where relative paths inside the config start (default :data:`PROJECT_ROOT`).
    """
    if not isinstance(data, dict):
        raise ConfigError(source, [Problem("<root>", data, "the file must hold a YAML mapping")])
    if "pipeline" in data and "runs" not in data:
        # The section was renamed: "pipeline" now names only the state machine and its steps.
        raise ConfigError(source, [Problem("pipeline", "<section>", "this section is now called runs: (same fields)")])
    try:
        config = EnvironmentConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(source, problems_from(err)) from None
    problems = cross_field_problems(config, base_dir or PROJECT_ROOT)
    if problems:
        raise ConfigError(source, problems)
    return config


def load_config(
    path: str | Path, base_dir: Path | None = None, overrides: Mapping[str, Any] | None = None
) -> EnvironmentConfig:
    """Read and validate one environment's YAML file (the only file read at synth time).

    ``path`` is relative to the current directory; paths inside the file are relative to
    ``base_dir`` (default :data:`PROJECT_ROOT`). ``overrides`` maps dotted field paths to values
    set on top of the file before validation (e.g. ``{"runs.poll_seconds": 2}`` for the local
    mode); the file's rules apply to them.
    """
    path = Path(path)
    data = read_yaml(path)
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
    return parse_config(data, str(path), base_dir or PROJECT_ROOT)
