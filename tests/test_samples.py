"""The generated sample: the same bytes for the same seed, both classes, camera frames in shots."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from PIL import Image

from panopipe.samples import generate
from panopipe.samples.generate import CLASSES, camera_frames, generate_dataset


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def test_the_same_seed_gives_the_same_bytes_and_another_seed_other_images(tmp_path: Path) -> None:
    first = _digest(generate_dataset(tmp_path / "a", per_class=4, seed=3, size=64))
    again = _digest(generate_dataset(tmp_path / "b", per_class=4, seed=3, size=64))
    other = _digest(generate_dataset(tmp_path / "c", per_class=4, seed=4, size=64))
    assert first == again
    assert sorted(first) == sorted(other) and first != other
    assert sorted(first) == [f"{name}/{name}_{i:04d}.png" for name in CLASSES for i in range(4)]
    with Image.open(tmp_path / "a" / "person" / "person_0000.png") as image:
        assert image.size == (64, 64) and image.mode == "RGB"


def test_camera_frames_are_deterministic_640x480_shots(tmp_path: Path) -> None:
    paths = camera_frames(tmp_path / "a", count=7, seed=1, shot_length=3)
    assert [p.name for p in paths] == [f"frame_{i:05d}.jpg" for i in range(7)]
    again = camera_frames(tmp_path / "b", count=7, seed=1, shot_length=3)
    assert [p.read_bytes() for p in paths] == [p.read_bytes() for p in again]
    with Image.open(paths[0]) as image:
        assert image.size == (640, 480)
    # a shot without a person shows the same scene throughout; a person moves across the next one
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert paths[3].read_bytes() != paths[4].read_bytes()


def test_the_sample_is_generated_once_into_its_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[Path] = []
    monkeypatch.setattr(generate, "SAMPLE_PER_CLASS", 2)
    real = generate.generate_dataset

    def counting(out_dir: Path, per_class: int = 1, seed: int = 0, size: int = 128) -> Path:
        made.append(out_dir)
        return real(out_dir, per_class, seed, size=32)

    monkeypatch.setattr(generate, "generate_dataset", counting)
    first = generate.sample_dataset(tmp_path)
    assert generate.sample_dataset(tmp_path) == first and len(made) == 1
    assert sorted(p.name for p in first.iterdir()) == list(CLASSES)
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no temporary folder left
