"""The config's ``preparation`` section: defaults, and each rule's clear error (field, value, rule)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from panopipe.config import load_config, parse_config
from tests.conftest import ROOT
from tests.test_config import _problems, _with


def test_defaults_prepare_raw_data_sets_with_two_variants_of_every_kind() -> None:
    prep = parse_config(_with({}), "config/dev.yaml", base_dir=ROOT).preparation

    assert prep.enabled is True
    assert (prep.variations_per_image, prep.variation_kinds) == (2, ("lighting", "skew", "lens"))
    assert (prep.validation_fraction, prep.seed, prep.min_images_per_class) == (0.2, 0, 10)
    assert prep.timeout_seconds == prep.max_runtime_seconds + 600


def test_the_example_documents_every_field_with_its_default() -> None:
    example = load_config(ROOT / "config" / "example.yaml", base_dir=ROOT).preparation
    text = (ROOT / "config" / "example.yaml").read_text()

    section = text[text.index("\npreparation:") : text.index("\ncompilation:")]
    for name in example.model_dump():
        assert f"\n  {name}:" in section and re.search(rf"#.*\b{name}\b", section), name  # set, and explained
    assert example == parse_config(_with({}), "x.yaml", base_dir=ROOT).preparation  # the example shows the defaults


@pytest.mark.parametrize(
    ("field", "value", "rule"),
    [
        ("variations_per_image", 21, "less than or equal to 20"),
        ("variation_kinds", ["lighting", "blur"], "'lighting', 'skew' or 'lens'"),
        ("variation_kinds", ["lens", "lens"], "variation kinds must be unique; repeated: lens"),
        ("validation_fraction", 0.9, "less than or equal to 0.5"),
        ("min_images_per_class", 1, "greater than or equal to 2"),
        ("instance_type", "ml.p9.huge", "not a SageMaker Processing instance type (e.g. ml.m5."),
        ("max_runtime_seconds", 10, "greater than or equal to 60"),
        ("stride", 2, "unknown field"),
    ],
)
def test_a_bad_value_names_the_field_the_value_and_the_rule(field: str, value: Any, rule: str) -> None:
    (problem,) = _problems(_with({f"preparation.{field}": value}))

    assert problem.startswith(f"preparation.{field}"), problem
    assert rule in problem, problem


def test_without_the_step_a_run_has_no_preparation_time_budget() -> None:
    on = parse_config(_with({}), "x.yaml", base_dir=ROOT)
    off = parse_config(_with({"preparation.enabled": False}), "x.yaml", base_dir=ROOT)

    assert on.minimum_run_seconds - off.minimum_run_seconds == on.preparation.timeout_seconds
