"""The real entry points: `npx cdk synth` with the pinned CLI, and app.py (one environment, or the delivery file)."""

from __future__ import annotations

import json
import os
import re
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
    for template in out.rglob("*.template.json"):  # without a delivery file, no delivery pipeline
        types = {r["Type"] for r in json.loads(template.read_text())["Resources"].values()}
        assert not types & {"AWS::CodePipeline::Pipeline", "AWS::CodeBuild::Project"}, template.name


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


def _app_py(context: dict[str, str], outdir: Path) -> subprocess.CompletedProcess[str]:
    """``python app.py`` as the CDK CLI runs it (context and output folder in the environment)."""
    env = _clean_env()
    env["CDK_CONTEXT_JSON"] = json.dumps(context)
    env["CDK_OUTDIR"] = str(outdir)
    return subprocess.run([sys.executable, "app.py"], cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)


def test_app_py_with_a_delivery_file_builds_the_pipeline_and_its_stages(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = _app_py({"delivery": "config/delivery.example.yaml", "config": "config/dev.yaml"}, out)
    assert result.returncode == 0, result.stderr
    top = json.loads((out / "manifest.json").read_text())["artifacts"]
    stacks = sorted(k for k, v in top.items() if v["type"] == "aws:cloudformation:stack")
    assert stacks == ["panopipe-delivery"], "only the delivery stack is top level (-c config is not used)"
    nested = sorted(
        (p.parent.name, re.sub(r"[0-9A-F]{8}\.template\.json$", "", p.name))
        for p in out.glob("assembly-*/*.template.json")
    )
    assert nested == [
        (f"assembly-panopipe-delivery-panopipe-{env}", f"panopipedeliverypanopipe{env}{stack}")
        for env in ("dev", "prod")
        for stack in ("Application", "DeliveryAccess", "Pipeline", "Storage")
    ]


def test_app_py_refuses_a_delivery_file_the_pipeline_could_not_read(tmp_path: Path) -> None:
    """The pipeline synthesizes from its checkout: a delivery file elsewhere is refused, in one line."""
    outside = tmp_path / "delivery.yaml"
    outside.write_text((ROOT / "config" / "delivery.example.yaml").read_text())
    result = _app_py({"delivery": str(outside)}, tmp_path / "out")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"error: invalid configuration {outside} (1 problem):" in result.stderr
    assert "must be inside the repository (the pipeline synthesizes it)" in result.stderr
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").rglob("*.template.json"))


def test_node_on_path_is_the_pinned_one() -> None:
    node = shutil.which("node", path=_clean_env()["PATH"])
    assert node is not None
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True).stdout
    assert version.startswith(
        "v" + json.loads((ROOT / "package.json").read_text())["devDependencies"]["node"].split(".")[0]
    )
