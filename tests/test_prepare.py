"""processing/prepare.py: letterboxing, seeded variations, the stratified split, RecordIO, the report's rules."""

from __future__ import annotations

import io
import json
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lambda_handlers.dataset_records import count_recordio
from processing import prepare as p

CLASSES = ("empty", "person")


def settings(**changes: object) -> p.Settings:
    values: dict[str, object] = {"classes": CLASSES, "width": 64, "height": 48, "min_images_per_class": 3}
    values.update(changes)
    return p.Settings(**values)  # type: ignore[arg-type]


def image(path: Path, size: tuple[int, int] = (80, 60), mode: str = "RGB", seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    picture = Image.fromarray(pixels)
    (picture if mode == "RGB" else picture.convert(mode) if mode != "I;16" else Image.new("I;16", size)).save(path)
    return path


def data_set(root: Path, per_class: int = 5) -> Path:
    for c, name in enumerate(CLASSES):
        for i in range(per_class):
            image(root / name / f"{i}.{'png' if i % 2 else 'jpg'}", seed=10 * c + i)
    return root


def records(path: Path) -> list[tuple[float, int, bytes]]:
    """(label, id, payload) of each record, parsed by hand as MXNet's unpack does."""
    data, found, at = path.read_bytes(), [], 0
    while at < len(data):
        magic, length = struct.unpack_from("<II", data, at)
        assert magic == p.RECORDIO_MAGIC and length >> 29 == 0
        body = data[at + 8 : at + 8 + length]
        flag, label, index, _ = struct.unpack_from("<IfQQ", body)
        assert flag == 0
        found.append((label, index, body[24:]))
        at += 8 + ((length + 3) & ~3)
    return found


# --- pieces --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("size", "box"), [((200, 100), (0, 8, 64, 40)), ((50, 100), (20, 0, 44, 48))])
def test_letterbox_keeps_the_aspect_on_black_bars(size: tuple[int, int], box: tuple[int, int, int, int]) -> None:
    boxed = p.letterbox(Image.new("RGB", size, (255, 255, 255)), 64, 48)

    assert boxed.size == (64, 48)
    assert Image.eval(boxed.convert("L"), lambda v: 255 if v > 128 else 0).getbbox() == box


@pytest.mark.parametrize("kinds", [("lighting",), ("skew",), ("lens",), p.VARIATION_KINDS])
def test_each_variation_is_deterministic_per_seed_and_changes_the_image(kinds: tuple[str, ...], tmp_path: Path) -> None:
    original = p.letterbox(Image.open(image(tmp_path / "a.png", (96, 64))), 64, 48)

    def made(seed: int) -> bytes:
        return p.variation(original, kinds, p.image_rng(seed, "person/a.jpg", 1)).tobytes()

    assert made(1) == made(1)
    assert made(1) != made(2)
    assert made(1) != original.tobytes()


def test_stratified_split_holds_out_the_fraction_of_every_class() -> None:
    blank = Image.new("RGB", (4, 4))
    samples = [p.Sample(f"a{i}", 0, blank) for i in range(10)] + [p.Sample(f"b{i}", 1, blank) for i in range(4)]

    train, validation = p.split(samples, 0.3, seed=3)

    assert sorted(s.label for s in validation) == [0, 0, 0, 1]  # 30 % of 10, of 4 (rounded)
    assert len(train) + len(validation) == 14
    assert {s.name for s in train}.isdisjoint(s.name for s in validation)
    assert [s.name for s in p.split(samples, 0.3, seed=3)[1]] == [s.name for s in validation]
    assert [s.name for s in p.split(samples, 0.3, seed=4)[1]] != [s.name for s in validation]


# --- whole runs ----------------------------------------------------------------------------------


def test_recordio_output_is_counted_by_the_pipeline_and_labelled_by_class_index(tmp_path: Path) -> None:
    report = p.prepare(data_set(tmp_path / "in"), tmp_path / "out", settings(variations=2))

    assert report.failure is None
    train, validation = tmp_path / "out/train/train.rec", tmp_path / "out/validation/validation.rec"
    document = json.loads((tmp_path / "out/report.json").read_text())
    assert count_recordio([train.read_bytes()]) == document["train_records"] == 4 * 3 * 2
    assert count_recordio([validation.read_bytes()]) == document["validation_records"] == 2
    assert document["images_before"] == {"empty": 5, "person": 5}
    assert document["images_after"] == {
        "empty": {"train": 12, "validation": 1},
        "person": {"train": 12, "validation": 1},
    }
    assert document["imbalance_ratio"] == 1.0
    parsed = records(train)
    assert sorted({label for label, _, _ in parsed}) == [0.0, 1.0]
    assert [index for _, index, _ in parsed] == list(range(24))
    assert all(Image.open(io.BytesIO(payload)).size == (64, 48) for _, _, payload in parsed)


def test_the_same_seed_writes_the_same_bytes(tmp_path: Path) -> None:
    source = data_set(tmp_path / "in")
    p.prepare(source, tmp_path / "a", settings())
    p.prepare(source, tmp_path / "b", settings())
    p.prepare(source, tmp_path / "c", settings(seed=7))

    same = (tmp_path / "a/train/train.rec").read_bytes()
    assert same == (tmp_path / "b/train/train.rec").read_bytes()
    assert same != (tmp_path / "c/train/train.rec").read_bytes()


def test_script_mode_gets_class_folders(tmp_path: Path) -> None:
    p.prepare(data_set(tmp_path / "in"), tmp_path / "out", settings(output_format="folders", variations=1))

    assert len(list((tmp_path / "out/train/person").glob("*.jpg"))) == 8
    assert len(list((tmp_path / "out/validation/empty").glob("*.jpg"))) == 1


def test_unusable_files_are_rejected_with_their_reason(tmp_path: Path) -> None:
    root = data_set(tmp_path / "in")
    (root / "person/broken.jpg").write_bytes(b"not a jpeg")
    image(root / "person/tiny.png", (10, 10))
    image(root / "person/deep.png", (64, 64), mode="I;16")
    (root / "person/notes.txt").write_text("hello")

    report = p.prepare(root, tmp_path / "out", settings())

    reasons = {r["file"]: r["reason"] for r in report.rejected}
    assert reasons["person/broken.jpg"].startswith("unreadable: UnidentifiedImageError")
    assert reasons["person/tiny.png"] == "too small: 10x10, under 32 px on a side"
    assert reasons["person/deep.png"] == "wrong mode I;16: give 8-bit RGB or grayscale images"
    assert reasons["person/notes.txt"] == "not an image file (.txt)"
    assert report.failure is None


@pytest.mark.parametrize(
    ("arrange", "reason"),
    [
        (
            lambda root: image(root / "cat/0.jpg"),
            "image folder 'cat' names a class not in model.classes (empty, person)",
        ),
        (
            lambda root: [f.unlink() for f in list((root / "person").iterdir())[:3]],
            "class 'person' has 2 usable images, fewer than preparation.min_images_per_class (3)",
        ),
        (
            lambda root: [f.unlink() for f in (root / "empty").iterdir()],
            "class 'empty' of model.classes has no images",
        ),
        (
            lambda root: [(root / f"person/bad{i}.jpg").write_bytes(b"x") for i in range(11)],
            "most files are unusable: 11 rejected, 10 usable (first: person/bad0.jpg: unreadable: ",
        ),
    ],
    ids=["unknown class", "below minimum", "empty class", "unreadable majority"],
)
def test_a_data_set_that_breaks_a_rule_exits_2_with_the_reason(tmp_path: Path, arrange, reason: str) -> None:  # type: ignore[no-untyped-def]
    root = data_set(tmp_path / "in")
    arrange(root)
    message = tmp_path / "ml/output/message"

    code = p.main(
        [
            *("--input", str(root), "--output", str(tmp_path / "out"), "--message-file", str(message)),
            *("--classes", "empty,person", "--width", "64", "--height", "48", "--min-images-per-class", "3"),
        ]
    )

    assert code == p.EXIT_REJECTED
    assert message.read_text().startswith(f"data set rejected: {reason}")
    assert json.loads((tmp_path / "out/report.json").read_text())["failure"].startswith(reason)


def test_a_ground_truth_manifest_labels_by_class_name_or_index(tmp_path: Path) -> None:
    root = data_set(tmp_path / "in")
    lines = [
        {
            "source-ref": f"s3://data/raw/{c}/{i}.{'png' if i % 2 else 'jpg'}",
            "job": 0,
            "job-metadata": {"class-name": c},
        }
        for c in CLASSES
        for i in range(5)
    ]
    lines.append({"source-ref": "s3://elsewhere/x.jpg", "job": 1})
    lines.append({"source-ref": "s3://data/raw/person/0.jpg", "job": 7})
    (root / "output.manifest").write_text("\n".join(json.dumps(line) for line in lines) + "\n")

    report = p.prepare(
        root,
        tmp_path / "out",
        settings(manifest="output.manifest", label_attribute="job", source_prefix="s3://data/raw/"),
    )

    assert report.failure is None
    assert report.images_before == {"empty": 5, "person": 5}
    assert [r["reason"] for r in report.rejected] == [
        "outside the data set folder s3://data/raw/",
        "label job = 7 is not a class index of model.classes",
    ]
