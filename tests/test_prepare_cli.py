"""``panopipe prepare DIR --out DIR``: the preparation script run here, with the config's settings."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from lambda_handlers.dataset_records import count_recordio
from panopipe import exit_codes
from panopipe.cli import app
from panopipe.config import load_config
from tests.conftest import ROOT
from tests.test_prepare import data_set

cli = CliRunner()
DEV = str(ROOT / "config" / "dev.yaml")


def test_prepares_with_the_configs_classes_size_and_variations(tmp_path: Path) -> None:
    source = data_set(tmp_path / "in", per_class=10)

    result = cli.invoke(app, ["prepare", str(source), "--out", str(tmp_path / "out"), "--config", DEV])

    assert result.exit_code == 0, result.output
    assert "person" in result.output and "rejected files: 0" in result.output
    report = json.loads((tmp_path / "out/report.json").read_text())
    _, _, height, width = load_config(DEV).model.input_shape
    assert report["input_size"] == [width, height] and report["variation_kinds"] == ["lighting", "skew", "lens"]
    assert report["images_after"]["person"] == {"train": 8 * 3, "validation": 2}
    assert count_recordio([(tmp_path / "out/train/train.rec").read_bytes()]) == 48


def test_a_rejected_data_set_exits_2_with_the_reason(tmp_path: Path) -> None:
    source = data_set(tmp_path / "in", per_class=4)  # dev: at least 10 per class

    result = cli.invoke(app, ["prepare", str(source), "--out", str(tmp_path / "out"), "--config", DEV])

    assert result.exit_code == exit_codes.USAGE
    assert (
        "data set rejected: class 'empty' has 4 usable images, fewer than preparation.min_images_per_class (10)"
        in result.output
    )


def test_a_missing_folder_is_a_usage_error(tmp_path: Path) -> None:
    result = cli.invoke(app, ["prepare", str(tmp_path / "nope"), "--out", str(tmp_path / "out"), "--config", DEV])

    assert result.exit_code == exit_codes.USAGE
    assert "no such folder" in result.output
