"""The ``preparation`` section: how a raw image data set becomes training channels (a Processing job).

The step runs only for data sets given as raw images (``<class>/`` folders or a Ground Truth
manifest); data sets with prepared ``train/`` and ``validation/`` channels go straight to training.
The script that runs is ``processing/prepare.py``; these fields become its arguments.
"""

from __future__ import annotations

import functools
from typing import Annotated, Literal

from pydantic import Field, field_validator

from panopipe.config.section_base import Section

VariationKind = Literal["lighting", "skew", "lens"]
VARIATION_KINDS: tuple[VariationKind, ...] = ("lighting", "skew", "lens")


@functools.cache
def processing_instance_types() -> frozenset[str]:
    """SageMaker's ``ProcessingInstanceType`` enum, read from botocore's service model (offline)."""
    from botocore.loaders import Loader

    model = Loader().load_service_model("sagemaker", "service-2")
    return frozenset(model["shapes"]["ProcessingInstanceType"]["enum"])


class PreparationConfig(Section):
    """The data preparation step: variations, split, rules, and the Processing job's resources."""

    enabled: bool = True
    variations_per_image: Annotated[int, Field(ge=0, le=20)] = 2
    variation_kinds: tuple[VariationKind, ...] = VARIATION_KINDS
    validation_fraction: Annotated[float, Field(ge=0.05, le=0.5)] = 0.2
    seed: Annotated[int, Field(ge=0, le=2**31 - 1)] = 0
    min_images_per_class: Annotated[int, Field(ge=2, le=1_000_000)] = 10
    min_image_side: Annotated[int, Field(ge=8, le=4096)] = 32
    instance_type: str = "ml.m5.xlarge"
    volume_size_gb: Annotated[int, Field(ge=1, le=16384)] = 30
    max_runtime_seconds: Annotated[int, Field(ge=60, le=5 * 24 * 3600)] = 3600

    @field_validator("variation_kinds")
    @classmethod
    def _unique_kinds(cls, kinds: tuple[VariationKind, ...]) -> tuple[VariationKind, ...]:
        repeated = sorted({k for k in kinds if kinds.count(k) > 1})
        if repeated:
            raise ValueError(f"variation kinds must be unique; repeated: {', '.join(repeated)}")
        return kinds

    @field_validator("instance_type")
    @classmethod
    def _processing_instance(cls, instance_type: str) -> str:
        known = processing_instance_types()
        if instance_type not in known:
            cpu = sorted(t for t in known if t.startswith("ml.m5."))
            raise ValueError(f"not a SageMaker Processing instance type (e.g. {', '.join(cpu[:4])})")
        return instance_type

    @property
    def timeout_seconds(self) -> int:
        """How long the preparation wait loop may last: the job's limit plus 10 min to start and upload."""
        return self.max_runtime_seconds + 600
