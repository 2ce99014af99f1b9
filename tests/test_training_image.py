"""Our direct read of sagemaker-core's image tables agrees with the SDK's own image_uris.retrieve."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from lambda_handlers.domain import NEO_EDGE_FRAMEWORK_VERSIONS
from panopipe.config import load_config, parse_config
from panopipe.naming import PANORAMA_REGIONS
from stacks.training_image import image_uri, newest_python3, training_image
from tests.conftest import ROOT


@pytest.fixture(scope="module")
def retrieve():  # type: ignore[no-untyped-def]
    from sagemaker.core import image_uris

    return image_uris.retrieve


@pytest.mark.parametrize("region", PANORAMA_REGIONS)
def test_builtin_image_classification_matches_the_sdk(retrieve, region: str) -> None:  # type: ignore[no-untyped-def]
    config = load_config(ROOT / "config" / "dev.yaml", base_dir=ROOT)
    image = training_image(config.training, config.model)
    expected = retrieve("image-classification", region=region)
    assert expected == f"{image.registry_for(region)}.dkr.ecr.{region}.amazonaws.com/{image.repository}:{image.tag}"


@pytest.mark.parametrize("region", PANORAMA_REGIONS)
def test_script_mode_pytorch_repository_matches_the_sdk(retrieve, region: str) -> None:  # type: ignore[no-untyped-def]
    config = load_config(ROOT / "tests" / "configs" / "script.yaml", base_dir=ROOT)
    image = training_image(config.training, config.model)
    expected = retrieve(
        "pytorch",
        region=region,
        version="1.8",
        py_version="py36",  # the newest Python 3 the table lists for 1.8
        instance_type="ml.g4dn.2xlarge",
        image_scope="training",
    )
    assert expected == image_uri(image, image.registry_for(region), region)


def test_unknown_region_is_a_clear_error() -> None:
    config = load_config(ROOT / "config" / "dev.yaml", base_dir=ROOT)
    with pytest.raises(LookupError, match="SageMaker has no image-classification image in mars-1"):
        training_image(config.training, config.model).registry_for("mars-1")


@pytest.mark.parametrize(
    ("framework", "version"),
    [(f, v) for f, versions in NEO_EDGE_FRAMEWORK_VERSIONS.items() for v in versions],
)
def test_every_framework_version_the_config_accepts_gets_the_sdks_newest_python3_image(
    retrieve: Any, framework: str, version: str
) -> None:
    """PyTorch 1.4 lists py2 first: script mode must never resolve a Python 2 image."""
    data = yaml.safe_load((ROOT / "tests" / "configs" / "script.yaml").read_text())
    shape = [1, 224, 224, 3] if framework == "TENSORFLOW" else [1, 3, 224, 224]
    data["model"].update(framework=framework, framework_version=version, input_shape=shape)
    config = parse_config(data, base_dir=ROOT)
    image = training_image(config.training, config.model)
    assert not image.tag.endswith("py2"), image.tag
    table = {"PYTORCH": "pytorch", "TENSORFLOW": "tensorflow", "MXNET": "mxnet"}[framework]
    py_version = image.tag.rsplit("-", 1)[-1]
    expected = retrieve(
        table,
        region="us-east-1",
        version=version,
        py_version=py_version,
        instance_type=config.training.instance_type,
        image_scope="training",
    )
    assert expected == image_uri(image, image.registry_for("us-east-1"), "us-east-1")


def test_the_newest_python3_is_chosen_by_version() -> None:
    assert newest_python3(["py2", "py3", "py36"]) == "py36"
    assert newest_python3(["py3", "py36", "py37"]) == "py37"
    with pytest.raises(LookupError, match="no Python 3"):
        newest_python3(["py2"])
