"""Session fixtures: the whole app is synthesized once, with cdk-nag, for every template test."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: The configurations whose stages are synthesized (one app, one synth per session).
STAGE_CONFIGS = {
    "dev": ROOT / "config" / "dev.yaml",
    "example": ROOT / "config" / "example.yaml",
    "script": ROOT / "tests" / "configs" / "script.yaml",
}
#: The delivery file whose pipeline is synthesized in the same app: its stack is ``delivery/Delivery``,
#: its stages' stacks ``delivery-<environment>/<Stack>``.
DELIVERY_FILE = "config/delivery.example.yaml"
DELIVERY = "delivery"


@dataclass(frozen=True)
class Synthesized:
    """Templates by stage key and stack construct id, plus the assembly's directory."""

    outdir: Path
    templates: dict[str, dict[str, dict[str, Any]]]
    stacks: dict[str, dict[str, Any]]  # "stage/Stack" -> stack artifact properties

    def template(self, stage: str, stack: str) -> dict[str, Any]:
        return self.templates[stage][stack]

    def resources(self, stage: str, stack: str, type_: str | None = None) -> dict[str, dict[str, Any]]:
        items = self.template(stage, stack)["Resources"].items()
        return {k: v for k, v in items if type_ is None or v["Type"] == type_}

    def all_templates(self) -> Iterator[tuple[str, str, dict[str, Any]]]:
        for stage, stacks in self.templates.items():
            for stack, template in stacks.items():
                yield stage, stack, template


def cdk_context() -> dict[str, Any]:
    """The feature flags of cdk.json, so in-process synths match `cdk synth`."""
    return dict(json.loads((ROOT / "cdk.json").read_text())["context"])


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory: pytest.TempPathFactory) -> Synthesized:
    import aws_cdk as cdk
    from cdk_nag import AwsSolutionsChecks

    from panopipe.config import load_config
    from panopipe.config.delivery import load_delivery
    from stacks.delivery.pipeline_stack import DeliveryStack
    from stacks.stage import EnvironmentStage

    outdir = tmp_path_factory.mktemp("cdk.out")
    app = cdk.App(context=cdk_context(), outdir=str(outdir))
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    stages = {
        key: EnvironmentStage(app, f"{key}-stage", config=load_config(path, base_dir=ROOT))
        for key, path in STAGE_CONFIGS.items()
    }
    delivery = DeliveryStack(app, "Delivery", delivery=load_delivery(DELIVERY_FILE, ROOT))
    stages.update({f"{DELIVERY}-{s.config.environment}": s for s in delivery.environment_stages})
    assembly = app.synth()  # raises if cdk-nag reports an unacknowledged finding
    templates: dict[str, dict[str, dict[str, Any]]] = {}
    stacks: dict[str, dict[str, Any]] = {}
    for key, stage in [(DELIVERY, None), *stages.items()]:
        artifacts = [assembly.get_stack_artifact(delivery.artifact_id)] if stage is None else stage.synth().stacks
        templates[key] = {}
        for artifact in artifacts:
            stack_id = artifact.hierarchical_id.split("/")[-1]
            templates[key][stack_id] = json.loads(Path(artifact.template_full_path).read_text())
            stacks[f"{key}/{stack_id}"] = {
                "stack_name": artifact.stack_name,
                "termination_protection": artifact.termination_protection,
                "template_path": artifact.template_full_path,
                "dependencies": sorted(d.id for d in artifact.dependencies),
            }
    return Synthesized(outdir=outdir, templates=templates, stacks=stacks)


_ASSET_HASH = re.compile(r"\b[0-9a-f]{64}\b")


def mask_asset_hashes(value: Any) -> Any:
    """Replace asset hashes so snapshots change only when the template really changes."""
    text = _ASSET_HASH.sub("<asset-hash>", json.dumps(value, sort_keys=True))
    return json.loads(text)
