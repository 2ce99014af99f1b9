"""The config and local state are found from any folder: the current folder first, then the project root."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from panopipe import exit_codes, local_mode, local_state, project
from panopipe.cli import app
from tests.conftest import ROOT
from tests.test_cli import aws, deployed_pipeline  # noqa: F401  (aws: a fixture, used by name)

cli = CliRunner()
SCRIPT_CONFIG = Path("tests/configs/script.yaml")  # script mode: its entry point is a path in the repo


def test_the_project_root_is_the_checkout() -> None:
    assert project.ROOT == ROOT
    assert local_state.STATE_FILE == ROOT / ".panopipe" / "local.json"


@pytest.mark.parametrize("where", ["subfolder", "outside"])
def test_validate_defaults_to_the_projects_dev_config_from_any_folder(
    where: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT / "stacks" / "steps" if where == "subfolder" else tmp_path)
    result = cli.invoke(app, ["validate"])
    assert result.exit_code == 0, result.output
    assert f"{ROOT / 'config' / 'dev.yaml'}: valid (panopipe-dev, " in result.stdout


def test_a_relative_config_path_falls_back_to_the_project_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = cli.invoke(app, ["validate", str(SCRIPT_CONFIG)])
    assert result.exit_code == 0, result.output
    assert "valid (panopipe-ci, " in result.stdout


def test_paths_inside_a_config_are_from_the_project_root_as_in_synth(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An absolute config path from another folder: its entry point is still found (synth runs in the root)."""
    monkeypatch.chdir(tmp_path)
    result = cli.invoke(app, ["validate", str(ROOT / SCRIPT_CONFIG)])
    assert result.exit_code == 0, result.output
    copied = tmp_path / "mine.yaml"  # a config of one's own, next to where one works
    shutil.copy(ROOT / SCRIPT_CONFIG, copied)
    result = cli.invoke(app, ["validate", "mine.yaml"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("mine.yaml: valid (panopipe-ci, ")


def test_a_config_in_the_current_folder_wins_over_the_projects(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "config").mkdir()
    text = (ROOT / "config" / "dev.yaml").read_text().replace("environment: dev", "environment: qa")
    (tmp_path / "config" / "dev.yaml").write_text(text)
    monkeypatch.chdir(tmp_path)
    result = cli.invoke(app, ["validate"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("config/dev.yaml: valid (panopipe-qa, ")


def test_a_config_found_nowhere_says_where_it_was_looked_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for args in (["validate", "config/nope.yaml"], ["status", "-c", "config/nope.yaml"], ["run", "-c", "nope.yaml"]):
        result = cli.invoke(app, args)
        assert result.exit_code == 2, result.output
        assert f"error: no config file {args[-1]} " in result.stderr
        assert f"(looked in {tmp_path} and in the project, {ROOT}): pass --config PATH" in result.stderr


def test_local_up_deploys_the_config_it_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`local up` from another folder hands the CDK CLI (which runs in the project root) the absolute path."""
    seen: list[Path] = []

    def up(config_path: Path, *_: object, **__: object) -> None:
        seen.append(config_path)
        raise local_mode.LocalModeError("stop here")

    monkeypatch.setattr(local_mode, "up", up)
    monkeypatch.chdir(tmp_path)
    result = cli.invoke(app, ["local", "up"])
    assert result.exit_code == exit_codes.AWS and "error: stop here" in result.stderr
    assert seen == [ROOT / "config" / "dev.yaml"]


@pytest.mark.usefixtures("aws")
def test_run_and_status_from_a_subfolder(monkeypatch: pytest.MonkeyPatch) -> None:
    target = deployed_pipeline()
    monkeypatch.chdir(ROOT / "tests")
    model = f"s3://{target.data_bucket}/imported/model.tar.gz"
    result = cli.invoke(app, ["run", "--config", "config/dev.yaml", "--model", model, "--no-watch"])
    assert result.exit_code == 0, result.output
    status = cli.invoke(app, ["status"])
    assert status.exit_code == 0, status.output
    assert "panopipe-dev pipeline runs" in status.stdout
