"""The ``training`` section: how SageMaker trains, and the metric gate that judges the result.

The built-in algorithms this pipeline can use (and why others are refused), the instance types
SageMaker trains on, which metric names are ratios, and the script-mode paths and metric definitions.
"""

from __future__ import annotations

import functools
import re
from pathlib import PurePosixPath, PureWindowsPath
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, ValidationInfo, computed_field, field_validator

from panopipe.config.section_base import ReadOnlyMapping, Section

#: SageMaker built-in algorithms this pipeline can train with, and why others are refused.
BUILTIN_ALGORITHMS = ("image-classification",)
REFUSED_ALGORITHMS: dict[str, str] = {
    "object-detection": (
        "the built-in object-detection algorithm does not compile with SageMaker Neo for the "
        "appliance (operator _contrib_MultiBoxTarget); train a detector in script mode instead"
    ),
    "semantic-segmentation": "the built-in semantic-segmentation algorithm has no Panorama runtime support",
}

#: Families the built-in image-classification algorithm trains on (GPU only).
GPU_FAMILY_PREFIXES = ("p", "g")

#: Metrics each built-in algorithm emits (its final values are what the gate reads). Source for
#: image-classification: the SageMaker developer guide, "Tune an Image Classification Model"
#: (IC-tuning, section "Metrics Computed by the Image Classification Algorithm") documents
#: validation:accuracy (maximize, "the ratio of the number of correct predictions to the total
#: number of predictions"); the algorithm's own metric definitions, listed for its training jobs
#: in the SageMaker console and CloudWatch, add train:accuracy and the per-epoch
#: train:accuracy:epoch and validation:accuracy:epoch. All four are ratios (0-1).
BUILTIN_METRICS: dict[str, tuple[str, ...]] = {
    "image-classification": (
        "validation:accuracy",
        "train:accuracy",
        "validation:accuracy:epoch",
        "train:accuracy:epoch",
    ),
}

#: Words that make a metric a ratio, 0 to 1 (``validation:accuracy``, ``val_acc``, ``mAP50``,
#: ``test/f1``, ``mean_iou``): a long word anywhere in the name, or a short one as a whole word of it
#: (words split at anything but letters and digits, trailing digits ignored, case ignored). A name
#: with the word ``loss`` is not a ratio; one with ``percent`` or ``pct`` is a percentage (0-100).
RATIO_WORDS = ("accuracy", "precision", "recall", "jaccard", "dice")
RATIO_SHORT_WORDS = frozenset({"acc", "f1", "fscore", "map", "ap", "auc", "iou", "miou"})
PERCENT_WORDS = frozenset({"percent", "pct"})


def metric_scale(name: str) -> float | None:
    """The upper bound of a metric known by its name to be a ratio (1) or a percentage (100), else None."""
    lowered = name.lower()
    words = re.findall(r"[a-z0-9]+", lowered)
    if "loss" in words:
        return None
    ratio = any(w in lowered for w in RATIO_WORDS) or any(
        w in RATIO_SHORT_WORDS or w.rstrip("0123456789") in RATIO_SHORT_WORDS for w in words
    )
    if not ratio:
        return None
    return 100.0 if PERCENT_WORDS & set(words) else 1.0


@functools.cache
def training_instance_types() -> frozenset[str]:
    """SageMaker's ``TrainingInstanceType`` enum, read from botocore's service model (offline)."""
    from botocore.loaders import Loader

    model = Loader().load_service_model("sagemaker", "service-2")
    return frozenset(model["shapes"]["TrainingInstanceType"]["enum"])


def instance_family(instance_type: str) -> str:
    """The family of ``ml.<family>.<size>`` (e.g. ``p3``), or "" for anything else."""
    parts = instance_type.split(".")
    return parts[1] if len(parts) == 3 and parts[0] == "ml" else ""


class MetricGate(Section):
    """The evaluation gate: a training metric and the value it must reach."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_:./-]+$", max_length=255)]
    threshold: float
    goal: Literal["maximize", "minimize"] = "maximize"

    @field_validator("threshold")
    @classmethod
    def _on_the_metric_scale(cls, threshold: float, info: ValidationInfo) -> float:
        name = info.data.get("name")
        scale = metric_scale(name) if name else None
        if scale is not None and not 0 <= threshold <= scale:
            kind = "a ratio" if scale == 1 else "a percentage"
            hint = f": write {threshold / 100:g} for {threshold:g} %" if scale == 1 and 1 < threshold <= 100 else ""
            raise ValueError(f"{name} is {kind}, so the threshold must lie within 0 and {scale:g}{hint}")
        return threshold


class MetricDefinition(Section):
    """A metric SageMaker reads from the training log (its ``MetricDefinitions``): the regex's one group."""

    name: Annotated[str, Field(min_length=1, max_length=255, pattern=r"^.+$")]
    regex: Annotated[str, Field(min_length=1, max_length=500)]

    @field_validator("regex")
    @classmethod
    def _one_group(cls, regex: str) -> str:
        try:
            groups = re.compile(regex).groups
        except re.error as err:
            raise ValueError(f"is not a valid regular expression: {err}") from None
        if groups != 1:
            raise ValueError(f"must have exactly one capture group, around the value (it has {groups})")
        return regex


def _relative_path(path: str) -> str:
    """A path inside the repository: relative, with / separators and no .. component."""
    if "\\" in path:
        raise ValueError("use / as the path separator")
    if PurePosixPath(path).is_absolute() or PureWindowsPath(path).drive or path.startswith("~"):
        raise ValueError("must be relative to the project root, not an absolute path")
    if ".." in PurePosixPath(path).parts:
        raise ValueError("must stay inside the project: no .. in the path")
    return path


class TrainingConfig(Section):
    """How SageMaker trains the model."""

    mode: Literal["builtin", "script"]
    algorithm: str | None = None
    entry_point: Annotated[str, Field(min_length=1), AfterValidator(_relative_path)] | None = None
    source_dir: Annotated[str, Field(min_length=1), AfterValidator(_relative_path)] | None = None
    instance_type: str = "ml.p3.2xlarge"
    instance_count: Annotated[int, Field(ge=1, le=100)] = 1
    volume_size_gb: Annotated[int, Field(ge=1, le=16384)] = 50
    spot: bool = True
    max_runtime_seconds: Annotated[int, Field(ge=60, le=28 * 24 * 3600)] = 4 * 3600
    max_wait_seconds: Annotated[int, Field(ge=60, le=28 * 24 * 3600)] | None = None
    hyperparameters: ReadOnlyMapping[str | int | float | bool] = Field(default_factory=dict, validate_default=True)
    metric: MetricGate
    metric_definitions: Annotated[tuple[MetricDefinition, ...], Field(max_length=40)] = ()
    #: The Ground Truth attribute that holds each image's class in a manifest data set (AttributeNames).
    label_attribute: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]+$", max_length=256)] = "class"

    @field_validator("metric_definitions")
    @classmethod
    def _unique_metric_names(cls, definitions: tuple[MetricDefinition, ...]) -> tuple[MetricDefinition, ...]:
        names = [d.name for d in definitions]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"metric names must be unique; repeated: {', '.join(repeated)}")
        return definitions

    @field_validator("algorithm")
    @classmethod
    def _known_algorithm(cls, algorithm: str | None) -> str | None:
        if algorithm is None:
            return None
        if algorithm in REFUSED_ALGORITHMS:
            raise ValueError(REFUSED_ALGORITHMS[algorithm])
        if algorithm not in BUILTIN_ALGORITHMS:
            raise ValueError(f"supported built-in algorithms: {', '.join(BUILTIN_ALGORITHMS)}")
        return algorithm

    @field_validator("instance_type")
    @classmethod
    def _known_instance_type(cls, instance_type: str) -> str:
        known = training_instance_types()
        if instance_type in known:
            return instance_type
        families = sorted({instance_family(t) for t in known})
        family = instance_family(instance_type)
        if not family:
            raise ValueError("instance types look like ml.<family>.<size>, e.g. ml.p3.2xlarge")
        if family not in families:
            raise ValueError(
                f"unknown instance type family {family!r} (SageMaker training families: {', '.join(families)})"
            )
        sizes = sorted(t.split(".")[2] for t in known if instance_family(t) == family)
        raise ValueError(f"SageMaker does not train on this size of {family}; sizes: {', '.join(sizes)}")

    @field_validator("max_wait_seconds")
    @classmethod
    def _wait_covers_runtime(cls, wait: int | None, info: ValidationInfo) -> int | None:
        runtime = info.data.get("max_runtime_seconds")
        if wait is not None and runtime is not None and wait < runtime and info.data.get("spot", True):
            raise ValueError(f"managed spot training needs max_wait_seconds >= max_runtime_seconds ({runtime})")
        return wait

    @property
    def source_directory(self) -> str | None:
        """Script mode: the directory archived for the job (``source_dir``, else the entry point's)."""
        if self.mode != "script" or self.entry_point is None:
            return None
        return self.source_dir or str(PurePosixPath(self.entry_point).parent)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def program(self) -> str | None:
        """Script mode: the entry point's path inside the archived directory (``sagemaker_program``)."""
        if self.mode != "script" or self.entry_point is None:
            return None
        return self.entry_point if self.source_dir else PurePosixPath(self.entry_point).name

    @computed_field  # type: ignore[prop-decorator]
    @property
    def effective_max_wait_seconds(self) -> int | None:
        """Spot jobs wait for capacity up to this long (default: twice the runtime)."""
        if not self.spot:
            return None
        return self.max_wait_seconds or min(2 * self.max_runtime_seconds, 28 * 24 * 3600)
