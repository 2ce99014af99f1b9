"""`panopipe` is a console script of the venv (`make` installs the project), and its --help is quick."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from importlib.metadata import entry_points
from pathlib import Path

from typer.testing import CliRunner

from panopipe import exit_codes
from panopipe.cli import app
from tests.conftest import ROOT

VENV_BIN = Path(sys.prefix) / "bin"
#: Modules --help must not import (each costs tens to hundreds of milliseconds).
HEAVY = ("pydantic", "yaml", "boto3", "botocore", "aws_cdk", "moto", "panopipe.config", "lambda_handlers")


def _outside_env() -> dict[str, str]:
    """The environment of a shell outside the checkout: no PYTHONPATH pointing into it."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSTARTUP")}


def test_pyproject_declares_the_script_and_every_package() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["scripts"] == {"panopipe": "panopipe.cli:main"}
    assert re.fullmatch(r"setuptools==[\d.]+", pyproject["build-system"]["requires"][0]), "the backend is pinned"
    included = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    assert sorted(included) == ["lambda_handlers*", "local_aws*", "panopipe*", "panorama_app*", "stacks*"]


def test_the_makefile_installs_the_project_from_the_lock_without_resolving(tmp_path: Path) -> None:
    recipe = subprocess.run(
        ["make", "-n", "-B", "-C", str(ROOT), f"VENV={tmp_path / 'venv'}", f"{tmp_path / 'venv'}/.installed"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "-m pip install --quiet --disable-pip-version-check -r requirements.lock" in recipe
    assert "-m pip install --quiet --disable-pip-version-check --no-deps --editable ." in recipe


def test_the_venv_has_a_panopipe_script_that_runs_from_any_folder(tmp_path: Path) -> None:
    (script,) = entry_points(group="console_scripts", name="panopipe")
    assert script.value == "panopipe.cli:main"
    executable = VENV_BIN / "panopipe"
    assert executable.is_file(), f"{executable} is missing: `make test` installs the project into the venv"
    result = subprocess.run(
        [str(executable), "--help"], cwd=tmp_path, env=_outside_env(), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "Usage: panopipe" in result.stdout and "Exit codes:" in result.stdout


def test_python_m_panopipe_works_outside_the_checkout_too(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "panopipe", "--help"],
        cwd=tmp_path,
        env=_outside_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def test_help_lists_the_exit_codes() -> None:
    for args in (["--help"], ["run", "--help"], ["watch", "--help"], ["local", "up", "--help"]):
        result = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
        out = result.stdout
        for code, meaning in (
            (exit_codes.SUCCESS, "success"),
            (exit_codes.RUN_FAILED, "the run ended FAILED, TIMED_OUT or ABORTED"),
            (exit_codes.USAGE, "usage or input error"),
            (exit_codes.INTERRUPTED, "interrupted"),
        ):
            assert re.search(rf"^\W*{code} +{re.escape(meaning)}", out, re.M), (args, code, out)
        assert "AWS not ready or refusing" in out


def test_help_imports_nothing_heavy(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "panopipe", "--help"],
        cwd=tmp_path,
        env=_outside_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines() if line.startswith("import")}
    assert not {m for m in imported if m.split(".")[0] in HEAVY or m in HEAVY}


def test_the_cli_default_config_is_the_loaders() -> None:
    from panopipe.cli import DEFAULT_CONFIG
    from panopipe.config import DEFAULT_CONFIG_PATH

    assert Path(DEFAULT_CONFIG_PATH) == DEFAULT_CONFIG
