"""The real entry points: `npx cdk synth` with the pinned CLI, and app.py's config errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

CDK = ROOT / "node_modules" / ".bin" / "cdk"


def _clean_env() -> dict[str, str]:
    """No AWS credentials or profile: synth must not need an account."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "CDK_"))}  # and no ~/.aws below
    env["PATH"] = os.pathsep.join(
        [
            str(ROOT / "node_modules" / "node" / "bin"),
            str(ROOT / "node_modules" / ".bin"),
            str(Path(sys.executable).parent),
            env["PATH"],
        ]
    )
    env["CDK_DISABLE_VERSION_CHECK"] = "1"
    missing = str(ROOT / "no-such-aws-file")
    env.update(AWS_CONFIG_FILE=missing, AWS_SHARED_CREDENTIALS_FILE=missing, AWS_EC2_METADATA_DISABLED="true")
    return env


@pytest.mark.cli
def test_pinned_cdk_cli_synthesizes_the_app_without_credentials(tmp_path: Path) -> None:
    if not CDK.exists():
        pytest.fail("node_modules/.bin/cdk is missing: run `make test`, which installs the pinned CLI")
    version = subprocess.run([str(CDK), "--version"], capture_output=True, text=True, env=_clean_env(), check=True)
    pinned = json.loads((ROOT / "package.json").read_text())["devDependencies"]["aws-cdk"]
    assert version.stdout.startswith(pinned)
    out = tmp_path / "cdk.out"
    result = subprocess.run(
        [str(CDK), "synth", "--quiet", "--no-notices", "--output", str(out), "-c", "config=config/dev.yaml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=_clean_env(),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    templates = sorted(p.name for p in out.rglob("*.template.json"))
    assert templates == [
        "panopipedevApplication5BB9C5CE.template.json",
        "panopipedevPipeline3517A391.template.json",
        "panopipedevStorageDA011C86.template.json",
    ]


def test_app_py_reports_a_bad_config_clearly(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text((ROOT / "config" / "dev.yaml").read_text().replace("ml.g4dn.xlarge", "ml.zz9.xlarge"))
    env = _clean_env()
    env["CDK_CONTEXT_JSON"] = json.dumps({"config": str(bad)})
    env["CDK_OUTDIR"] = str(tmp_path / "out")
    result = subprocess.run([sys.executable, "app.py"], cwd=ROOT, capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"error: invalid configuration {bad} (1 problem):" in result.stderr
    assert "training.instance_type = 'ml.zz9.xlarge': unknown instance type family 'zz9'" in result.stderr
    assert not list((tmp_path / "out").rglob("*.template.json")), "nothing is synthesized from a bad config"


def test_node_on_path_is_the_pinned_one() -> None:
    node = shutil.which("node", path=_clean_env()["PATH"])
    assert node is not None
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True).stdout
    assert version.startswith(
        "v" + json.loads((ROOT / "package.json").read_text())["devDependencies"]["node"].split(".")[0]
    )
