"""`python -m panopipe`: the summary of a synthesized assembly and config validation."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from panopipe.__main__ import main
from tests.conftest import ROOT, Synthesized


def test_summary_lists_every_stack_bucket_and_role(
    synthesized: Synthesized, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["summary", str(synthesized.outdir)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^panopipe-prod-storage: \d+ resources, termination protection on$", out, re.M)
    assert "bucket  aws-panorama-panopipe-prod-data-123456789012-us-west-2" in out
    assert "role    panopipe-prod-sagemaker-execution" in out
    assert out.count("-service-roles: ") == 3
    assert "Nothing was deployed." in out


def test_summary_without_assembly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", str(tmp_path)]) == 1
    assert "manifest.json not found: synthesize first" in capsys.readouterr().err


def test_validate(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["validate", str(ROOT / "config" / "example.yaml")]) == 0
    assert "valid (panopipe-prod, 2 device(s))" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text("project: X\n")
    assert main(["validate", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "(6 problems)" in err
    assert "  - project = 'X': " in err
    assert "  - devices = <missing>: required field is missing" in err
