"""Syrupy JSON snapshots of every synthesized template (asset hashes masked)."""

from __future__ import annotations

import pytest
from syrupy.assertion import SnapshotAssertion
from syrupy.extensions.json import JSONSnapshotExtension

from tests.conftest import STAGE_CONFIGS, Synthesized, mask_asset_hashes

STACKS = ("Storage", "Application", "Pipeline")


@pytest.fixture
def snapshot_json(snapshot: SnapshotAssertion) -> SnapshotAssertion:
    return snapshot.use_extension(JSONSnapshotExtension)


@pytest.mark.parametrize("stage", sorted(STAGE_CONFIGS))
@pytest.mark.parametrize("stack", STACKS)
def test_template_matches_snapshot(
    synthesized: Synthesized, snapshot_json: SnapshotAssertion, stage: str, stack: str
) -> None:
    assert mask_asset_hashes(synthesized.template(stage, stack)) == snapshot_json


def test_every_stack_is_snapshotted(synthesized: Synthesized) -> None:
    for stage in STAGE_CONFIGS:
        assert sorted(synthesized.templates[stage]) == sorted(STACKS)
