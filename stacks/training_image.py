"""Where SageMaker's training image for the configured mode lives, from the SDK's offline tables.

The ``sagemaker-core`` package ships the registry account and repository of every SageMaker image
per region as JSON (``sagemaker/core/image_uri_config``). We read those files directly: importing
``sagemaker.core`` itself costs ~1.5 s of every synth, and only the tables are needed.
"""

from __future__ import annotations

import functools
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from panopipe.config import Framework, ModelConfig, TrainingConfig

_FRAMEWORK_TABLES = {
    Framework.MXNET: "mxnet",
    Framework.PYTORCH: "pytorch",
    Framework.TENSORFLOW: "tensorflow",
}
_BUILTIN_VERSION = "1"


@dataclass(frozen=True)
class TrainingImage:
    """An ECR repository of a training image and the AWS-owned registry that holds it per region."""

    repository: str
    registries: dict[str, str]
    tag: str | None  # set for built-in algorithms; script-mode tags are resolved by the SDK

    def registry_for(self, region: str) -> str:
        """The registry account in ``region`` or a :class:`LookupError` naming the region."""
        try:
            return self.registries[region]
        except KeyError:
            raise LookupError(f"SageMaker has no {self.repository} image in {region}") from None


@functools.cache
def _table(name: str) -> dict[str, Any]:
    spec = importlib.util.find_spec("sagemaker")
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        path = Path(location) / "core" / "image_uri_config" / f"{name}.json"
        if path.is_file():
            return json.loads(path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]
    raise LookupError(f"sagemaker-core's image table {name}.json is not installed")


def training_image(training: TrainingConfig, model: ModelConfig) -> TrainingImage:
    """The training image for the configured mode: built-in algorithm or framework script mode."""
    if training.mode == "builtin":
        assert training.algorithm is not None
        entry = _table(training.algorithm)["versions"][_BUILTIN_VERSION]
        return TrainingImage(entry["repository"], dict(entry["registries"]), _BUILTIN_VERSION)
    table = _table(_FRAMEWORK_TABLES[model.framework])["training"]
    version = table.get("version_aliases", {}).get(model.framework_version, model.framework_version)
    entry = table["versions"][version]
    return TrainingImage(entry["repository"], dict(entry["registries"]), None)
