"""Read one environment's YAML file, apply ``-c config.<field>=<value>`` overrides, validate.

The only file read at synth time; ``app.py`` calls :func:`load_config` once and passes the typed
object down.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from panopipe.config.cross_field import cross_field_problems
from panopipe.config.problems import ConfigError, Problem, problems_from, short
from panopipe.config.schema import EnvironmentConfig

DEFAULT_CONFIG_PATH = "config/dev.yaml"


def parse_config(data: Any, source: str = "<config>", base_dir: Path | None = None) -> EnvironmentConfig:
    """Validate a mapping into a :class:`EnvironmentConfig` or raise :class:`ConfigError`."""
    if not isinstance(data, dict):
        raise ConfigError(source, [Problem("<root>", short(data), "the file must hold a YAML mapping")])
    if "pipeline" in data and "runs" not in data:
        # The section was renamed: "pipeline" now names only the state machine and its steps.
        raise ConfigError(source, [Problem("pipeline", "<section>", "this section is now called runs: (same fields)")])
    try:
        config = EnvironmentConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(source, problems_from(err)) from None
    problems = cross_field_problems(config, base_dir or Path.cwd())
    if problems:
        raise ConfigError(source, problems)
    return config


def load_config(
    path: str | Path, base_dir: Path | None = None, overrides: Mapping[str, Any] | None = None
) -> EnvironmentConfig:
    """Read and validate one environment's YAML file (the only file read at synth time).

    ``overrides`` maps dotted field paths to values set on top of the file before validation
    (e.g. ``{"runs.poll_seconds": 2}`` for the local mode); the file's rules apply to them.
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
