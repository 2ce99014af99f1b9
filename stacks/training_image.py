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

from aws_cdk import Aws, CfnMapping
from constructs import Construct

from panopipe.config import Framework, ModelConfig, TrainingConfig
from panopipe.config.training_schema import GPU_FAMILY_PREFIXES, instance_family
from panopipe.naming import PANORAMA_REGIONS

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
    tag: str

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
    # The SDK's tag for a framework image: <requested version>-<cpu|gpu>-<python>, e.g. 1.8-gpu-py3.
    processor = "gpu" if instance_family(training.instance_type).startswith(GPU_FAMILY_PREFIXES) else "cpu"
    tag = f"{model.framework_version}-{processor}-{newest_python3(entry['py_versions'])}"
    return TrainingImage(entry["repository"], dict(entry["registries"]), tag)


#: The data preparation job's image: the PyTorch training image (CPU) has Python 3.11, numpy and Pillow
#: (torchvision's dependency), all ``processing/prepare.py`` needs. A fixed version: the script's
#: environment must not change with the model's framework.
PROCESSING_FRAMEWORK_VERSION = "2.3.0"


def processing_image() -> TrainingImage:
    """The framework image the preparation Processing job runs ``prepare.py`` in (CPU, Python 3)."""
    entry = _table("pytorch")["training"]["versions"][PROCESSING_FRAMEWORK_VERSION]
    tag = f"{PROCESSING_FRAMEWORK_VERSION}-cpu-{newest_python3(entry['py_versions'])}"
    return TrainingImage(entry["repository"], dict(entry["registries"]), tag)


def newest_python3(py_versions: list[str]) -> str:
    """The newest Python 3 the table lists (``py3`` < ``py36`` < ``py37``).

    Never ``py2``, which PyTorch 1.4's entry lists first and no script written today runs on.
    """
    python3 = [v for v in py_versions if v.startswith("py3")]
    if not python3:
        raise LookupError(f"no Python 3 image among {py_versions}")
    return max(python3, key=lambda v: (int(v[3:] or 0), v))


def image_uri(image: TrainingImage, registry: str, region: str) -> str:
    """``<registry>.dkr.ecr.<region>.amazonaws.com/<repository>:<tag>`` (either may be a token)."""
    return f"{registry}.dkr.ecr.{region}.amazonaws.com/{image.repository}:{image.tag}"


def registry_account(
    scope: Construct,
    image: TrainingImage,
    region: str | None,
    mapping_id: str = "TrainingImageRegistry",
    literal_if_shared: bool = False,
) -> str:
    """The image's registry account: literal for a fixed region, else a per-region CfnMapping lookup.

    ``literal_if_shared``: literal also when every Panorama region has the same registry account
    (the Deep Learning Containers' 763104351884), so no mapping is added for it.
    """
    if region is not None:
        return image.registry_for(region)
    accounts = sorted({image.registries[r] for r in PANORAMA_REGIONS if r in image.registries})
    if literal_if_shared and len(accounts) == 1:
        return accounts[0]
    mapping = CfnMapping(
        scope,
        mapping_id,
        mapping={r: {"account": image.registries[r]} for r in PANORAMA_REGIONS if r in image.registries},
    )
    return mapping.find_in_map(Aws.REGION, "account")
