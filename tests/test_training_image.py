"""Our direct read of sagemaker-core's image tables agrees with the SDK's own image_uris.retrieve."""

from __future__ import annotations

import pytest

from panopipe.config import load_config
from panopipe.naming import PANORAMA_REGIONS
from stacks.training_image import image_uri, training_image
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
        py_version="py3",
        instance_type="ml.g4dn.2xlarge",
        image_scope="training",
    )
    assert expected == image_uri(image, image.registry_for(region), region)


def test_unknown_region_is_a_clear_error() -> None:
    config = load_config(ROOT / "config" / "dev.yaml", base_dir=ROOT)
    with pytest.raises(LookupError, match="SageMaker has no image-classification image in mars-1"):
        training_image(config.training, config.model).registry_for("mars-1")
