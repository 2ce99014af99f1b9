"""Prepare a raw image data set for training: one script for SageMaker, the local AWS and the CLI.

It runs unchanged in the SageMaker Processing container, in the local AWS and as ``panopipe prepare``.
Standard library, numpy and Pillow only (the PyTorch training image has both), numpy-version
agnostic: the same file runs unchanged in the container, in the local ML environment and in the
project's venv. It

1. reads a folder of images per class (``<class>/*.jpg|jpeg|png``) or a Ground Truth manifest
   (JSON lines: ``source-ref`` and a label attribute), rejecting files it cannot use, with the reason;
2. letterboxes each image to the model's input size (aspect kept, black bars);
3. splits train/validation stratified per class (seeded), then writes N seeded variations of each
   *training* image (lighting: brightness, contrast, gamma; skew: perspective; lens: barrel or
   pincushion distortion) so validation measures real images only;
4. writes the built-in image-classification format (RecordIO, im2rec layout: ``train/train.rec``,
   ``validation/validation.rec``; label = the class's index in ``--classes``) or image folders for
   script mode (``train/<class>/*.jpg``); and ``report.json``.

A data set that breaks a rule (a class below the minimum, most files unusable, a configured class
with no images, a folder naming a class not configured) exits with :data:`EXIT_REJECTED` and the
reason as the first line of stderr and in ``/opt/ml/output/message`` (SageMaker Processing returns
that file's first 1 KB as DescribeProcessingJob's ``ExitMessage``); the report is still written.

Paths default to the Processing container's ``/opt/ml/processing/...`` layout and are all arguments.
"""

from __future__ import annotations

import argparse
import io
import json
import struct
import sys
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

DEFAULT_INPUT = "/opt/ml/processing/input/data"
DEFAULT_OUTPUT = "/opt/ml/processing/output"
DEFAULT_MESSAGE_FILE = "/opt/ml/output/message"
EXIT_REJECTED = 2
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
#: Modes converted to RGB without losing meaning; 16-bit, float and 1-bit images are refused.
USABLE_MODES = frozenset({"RGB", "RGBA", "L", "LA", "P", "PA", "CMYK", "YCbCr"})
VARIATION_KINDS = ("lighting", "skew", "lens")
FORMATS = ("recordio", "folders")
RECORDIO_MAGIC = 0xCED7230A
JPEG_QUALITY = 90
MESSAGE_LIMIT = 1024  # ExitMessage: the first 1 KB


class Rejected(Exception):
    """The data set breaks a rule; the message is the reason the run reports."""


@dataclass(frozen=True)
class Settings:
    """What the preparation is told (the config's ``model.classes``/``input_shape`` and ``preparation``)."""

    classes: tuple[str, ...]
    width: int
    height: int
    variations: int = 2
    kinds: tuple[str, ...] = VARIATION_KINDS
    validation_fraction: float = 0.2
    seed: int = 0
    min_images_per_class: int = 10
    min_image_side: int = 32
    output_format: str = "recordio"
    manifest: str | None = None  # a Ground Truth manifest, relative to the input folder
    label_attribute: str = "class"
    source_prefix: str | None = None  # s3://bucket/prefix/ the input folder is a copy of (manifest form)


@dataclass
class Sample:
    """One usable image: where it came from, its class index, and its letterboxed pixels."""

    name: str
    label: int
    image: Image.Image


@dataclass
class Report:
    """What ``report.json`` holds."""

    settings: Settings
    images_before: dict[str, int] = field(default_factory=dict)
    images_after: dict[str, dict[str, int]] = field(default_factory=dict)
    rejected: list[dict[str, str]] = field(default_factory=list)
    failure: str | None = None
    seconds: float = 0.0

    def document(self) -> dict[str, Any]:
        """The JSON document (counts, imbalance, rejections, throughput)."""
        s = self.settings
        train = sum(c.get("train", 0) for c in self.images_after.values())
        validation = sum(c.get("validation", 0) for c in self.images_after.values())
        before = sum(self.images_before.values())
        return {
            "classes": list(s.classes),
            "input_size": [s.width, s.height],
            "format": s.output_format,
            "seed": s.seed,
            "variations_per_image": s.variations,
            "variation_kinds": list(s.kinds),
            "validation_fraction": s.validation_fraction,
            "images_before": self.images_before,
            "images_after": self.images_after,
            "train_records": train,
            "validation_records": validation,
            "imbalance_ratio": imbalance(self.images_before),
            "rejected": self.rejected,
            "failure": self.failure,
            "seconds": round(self.seconds, 3),
            "images_per_second": round(before / self.seconds, 1) if self.seconds > 0 else None,
        }


def imbalance(counts: dict[str, int]) -> float | None:
    """Largest class / smallest class (None when a class is empty: infinitely imbalanced)."""
    values = list(counts.values())
    if not values or min(values) == 0:
        return None
    return round(max(values) / min(values), 3)


# --- reading -------------------------------------------------------------------------------------


def load_image(path: Path, min_side: int) -> tuple[Image.Image | None, str]:
    """The image as RGB, or None and why it cannot be used (unreadable, too small, wrong mode)."""
    try:
        with Image.open(path) as opened:
            opened.load()
            image = opened
    except Exception as error:  # Pillow raises many types for a broken file
        return None, f"unreadable: {type(error).__name__}: {str(error)[:120]}"
    if image.mode not in USABLE_MODES:
        return None, f"wrong mode {image.mode}: give 8-bit RGB or grayscale images"
    if min(image.size) < min_side:
        return None, f"too small: {image.size[0]}x{image.size[1]}, under {min_side} px on a side"
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        background = Image.new("RGB", image.size, (0, 0, 0))
        background.paste(image.convert("RGBA"), mask=image.convert("RGBA").getchannel("A"))
        return background, ""
    return image.convert("RGB"), ""


def letterbox(image: Image.Image, width: int, height: int) -> Image.Image:
    """``image`` scaled to fit ``width`` x ``height`` with its aspect kept, centred on black bars."""
    return ImageOps.pad(image, (width, height), method=Image.Resampling.BICUBIC, color=(0, 0, 0))


def _folder_items(root: Path, settings: Settings, report: Report) -> list[tuple[str, Path, int]]:
    """(name, path, label) of every image file of the ``<class>/`` folders; others are rejected."""
    folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    unknown = [p.name for p in folders if p.name not in settings.classes]
    if unknown:
        raise Rejected(
            f"image folder {unknown[0]!r} names a class not in model.classes ({', '.join(settings.classes)})"
        )
    items: list[tuple[str, Path, int]] = []
    for folder in folders:
        label = settings.classes.index(folder.name)
        for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
            name = path.relative_to(root).as_posix()
            if path.suffix.lower() in IMAGE_SUFFIXES:
                items.append((name, path, label))
            else:
                report.rejected.append({"file": name, "reason": f"not an image file ({path.suffix or 'no suffix'})"})
    return items


def _manifest_items(root: Path, settings: Settings, report: Report) -> list[tuple[str, Path, int]]:
    """(name, path, label) of every line of a Ground Truth manifest; bad lines are rejected."""
    assert settings.manifest is not None
    manifest = root / settings.manifest
    if not manifest.is_file():
        raise Rejected(f"the manifest {settings.manifest} does not exist in the data set")
    attribute = settings.label_attribute
    items: list[tuple[str, Path, int]] = []
    for number, line in enumerate(manifest.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{settings.manifest}:{number}"
        try:
            entry = json.loads(line)
            source = str(entry["source-ref"])
        except (ValueError, KeyError, TypeError):
            report.rejected.append({"file": where, "reason": "not a JSON object with source-ref"})
            continue
        class_name = (entry.get(f"{attribute}-metadata") or {}).get("class-name")
        label = entry.get(attribute)
        if isinstance(class_name, str):
            if class_name not in settings.classes:
                raise Rejected(f"{where}: class {class_name!r} is not in model.classes ({', '.join(settings.classes)})")
            label = settings.classes.index(class_name)
        if not isinstance(label, int) or isinstance(label, bool) or not 0 <= label < len(settings.classes):
            report.rejected.append(
                {"file": where, "reason": f"label {attribute} = {label!r} is not a class index of model.classes"}
            )
            continue
        if source.startswith("s3://"):
            prefix = settings.source_prefix or ""
            if not prefix or not source.startswith(prefix):
                report.rejected.append(
                    {"file": source, "reason": f"outside the data set folder {prefix or '(none given)'}"}
                )
                continue
            path = root / source[len(prefix) :]
        else:
            path = (manifest.parent / source).resolve()
        items.append((source, path, label))
    return items


def read_samples(root: Path, settings: Settings, report: Report) -> list[Sample]:
    """Every usable image, letterboxed; counts per class and rejections go to ``report``."""
    items = _manifest_items(root, settings, report) if settings.manifest else _folder_items(root, settings, report)
    report.images_before = {name: 0 for name in settings.classes}
    samples: list[Sample] = []
    for name, path, label in items:
        if not path.is_file():
            report.rejected.append({"file": name, "reason": "unreadable: no such file"})
            continue
        image, reason = load_image(path, settings.min_image_side)
        if image is None:
            report.rejected.append({"file": name, "reason": reason})
            continue
        samples.append(Sample(name, label, letterbox(image, settings.width, settings.height)))
        report.images_before[settings.classes[label]] += 1
    return samples


def check_rules(settings: Settings, report: Report) -> None:
    """Raise :class:`Rejected` for the first rule the data set breaks."""
    usable = sum(report.images_before.values())
    if len(report.rejected) > usable:
        raise Rejected(
            f"most files are unusable: {len(report.rejected)} rejected, {usable} usable "
            f"(first: {report.rejected[0]['file']}: {report.rejected[0]['reason']})"
        )
    for name in settings.classes:
        count = report.images_before.get(name, 0)
        if count == 0:
            raise Rejected(f"class {name!r} of model.classes has no images")
        if count < settings.min_images_per_class:
            raise Rejected(
                f"class {name!r} has {count} usable images, fewer than preparation.min_images_per_class "
                f"({settings.min_images_per_class})"
            )


# --- splitting and variations --------------------------------------------------------------------


def split(samples: Sequence[Sample], fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """Stratified train/validation split: per class, a seeded shuffle, ``fraction`` (≥ 1 image) to validation."""
    rng = np.random.default_rng(seed)
    train: list[Sample] = []
    validation: list[Sample] = []
    for label in sorted({s.label for s in samples}):
        members = [s for s in samples if s.label == label]
        order = rng.permutation(len(members))
        count = min(len(members) - 1, max(1, round(len(members) * fraction))) if fraction > 0 else 0
        validation += [members[int(i)] for i in order[:count]]
        train += [members[int(i)] for i in order[count:]]
    return train, validation


def image_rng(seed: int, name: str, variant: int) -> np.random.Generator:
    """A generator for one variant of one image: the same output whatever order images come in."""
    return np.random.default_rng([seed, zlib.crc32(name.encode("utf-8")), variant])


def adjust_lighting(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Brightness, contrast and gamma, each drawn from a range a camera's day sees."""
    brightness, contrast, gamma = rng.uniform(0.6, 1.4), rng.uniform(0.6, 1.4), rng.uniform(0.7, 1.5)
    x = pixels.astype(np.float32) / 255.0 * np.float32(brightness)
    mean = x.mean()
    x = np.clip((x - mean) * np.float32(contrast) + mean, 0.0, 1.0)
    return np.asarray(np.power(x, np.float32(gamma)) * 255.0 + 0.5, dtype=np.float32).clip(0, 255).astype(np.uint8)


Point = tuple[float, float]


def perspective_coefficients(source: Sequence[Point], target: Sequence[Point]) -> list[float]:
    """Pillow's 8 PERSPECTIVE coefficients mapping ``target`` (output) corners to ``source`` (input)."""
    rows: list[list[float]] = []
    values: list[float] = []
    for (x, y), (u, v) in zip(target, source, strict=True):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
        values += [u, v]
    solved = np.linalg.solve(np.array(rows, dtype=np.float64), np.array(values, dtype=np.float64))
    return [float(c) for c in solved]


def skew(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A perspective warp: each corner moved up to 12 % of the size, as a camera tilted off-axis sees it."""
    w, h = image.size
    corners = [(0.0, 0.0), (float(w), 0.0), (float(w), float(h)), (0.0, float(h))]
    moved = [(x + rng.uniform(-0.12, 0.12) * w, y + rng.uniform(-0.12, 0.12) * h) for x, y in corners]
    return image.transform(
        (w, h), Image.Transform.PERSPECTIVE, perspective_coefficients(moved, corners), Image.Resampling.BILINEAR
    )


def lens_distortion(pixels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Radial distortion ``r' = r (1 + k r²)``: barrel (k > 0 samples outwards) or pincushion (k < 0)."""
    k = float(rng.uniform(0.08, 0.3)) * (1.0 if rng.random() < 0.5 else -1.0)
    h, w = pixels.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    nx, ny = (xs - (w - 1) / 2) / (w / 2), (ys - (h - 1) / 2) / (h / 2)
    factor = 1.0 + np.float32(k) * (nx * nx + ny * ny)
    sx = np.rint(nx * factor * (w / 2) + (w - 1) / 2).astype(np.int64)
    sy = np.rint(ny * factor * (h / 2) + (h - 1) / 2).astype(np.int64)
    inside = (sx >= 0) & (sx < w) & (sy >= 0) & (sy < h)
    out = np.zeros_like(pixels)
    out[inside] = pixels[sy[inside], sx[inside]]
    return out


def variation(image: Image.Image, kinds: Sequence[str], rng: np.random.Generator) -> Image.Image:
    """One variant of ``image`` with every kind in ``kinds`` applied, parameters drawn from ``rng``."""
    if "skew" in kinds:
        image = skew(image, rng)
    pixels = np.asarray(image, dtype=np.uint8)
    if "lens" in kinds:
        pixels = lens_distortion(pixels, rng)
    if "lighting" in kinds:
        pixels = adjust_lighting(pixels, rng)
    return Image.fromarray(np.ascontiguousarray(pixels))


# --- writing -------------------------------------------------------------------------------------


def jpeg(image: Image.Image) -> bytes:
    """The image as JPEG bytes."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def recordio_record(label: int, index: int, payload: bytes) -> bytes:
    """One RecordIO record as im2rec writes it: IRHeader (flag 0, label, id, id2) + the image."""
    data = struct.pack("<IfQQ", 0, float(label), index, 0) + payload
    return struct.pack("<II", RECORDIO_MAGIC, len(data)) + data + b"\0" * (-len(data) % 4)


class Writer:
    """Writes one split (``train`` or ``validation``) in the chosen format and counts it per class."""

    def __init__(self, output: Path, split_name: str, settings: Settings, counts: dict[str, dict[str, int]]) -> None:
        self.folder = output / split_name
        self.folder.mkdir(parents=True, exist_ok=True)
        self.split, self.settings, self.counts = split_name, settings, counts
        self.index = 0
        self.rec = (self.folder / f"{split_name}.rec").open("wb") if settings.output_format == "recordio" else None

    def add(self, sample: Sample, image: Image.Image, variant: int) -> None:
        """Write one image (``variant`` 0 is the letterboxed original)."""
        class_name = self.settings.classes[sample.label]
        payload = jpeg(image)
        if self.rec is not None:
            self.rec.write(recordio_record(sample.label, self.index, payload))
        else:
            stem = Path(sample.name).stem.replace("/", "_")
            target = self.folder / class_name / f"{stem}-{zlib.crc32(sample.name.encode()):08x}-{variant}.jpg"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(payload)
        self.index += 1
        bucket = self.counts.setdefault(class_name, {"train": 0, "validation": 0})
        bucket[self.split] += 1

    def close(self) -> None:
        """Flush the RecordIO file."""
        if self.rec is not None:
            self.rec.close()


def prepare(input_dir: Path, output_dir: Path, settings: Settings) -> Report:
    """Prepare the data set; the report is written to ``output_dir/report.json`` also when it is rejected."""
    started = time.perf_counter()
    report = Report(settings)
    try:
        if not input_dir.is_dir():
            raise Rejected(f"the input folder {input_dir} does not exist")
        samples = read_samples(input_dir, settings, report)
        check_rules(settings, report)
        train, validation = split(samples, settings.validation_fraction, settings.seed)
        report.images_after = {name: {"train": 0, "validation": 0} for name in settings.classes}
        order = np.random.default_rng([settings.seed, 1])
        writer = Writer(output_dir, "train", settings, report.images_after)
        try:
            for i in order.permutation(len(train)):
                sample = train[int(i)]
                writer.add(sample, sample.image, 0)
                for variant in range(1, settings.variations + 1):
                    rng = image_rng(settings.seed, sample.name, variant)
                    writer.add(sample, variation(sample.image, settings.kinds, rng), variant)
        finally:
            writer.close()
        writer = Writer(output_dir, "validation", settings, report.images_after)
        try:
            for sample in validation:
                writer.add(sample, sample.image, 0)
        finally:
            writer.close()
    except Rejected as error:
        report.failure = str(error)
    report.seconds = time.perf_counter() - started
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "report.json").write_text(json.dumps(report.document(), indent=2) + "\n", encoding="utf-8")
    return report


# --- command line --------------------------------------------------------------------------------


def _csv(text: str) -> tuple[str, ...]:
    return tuple(part for part in (p.strip() for p in text.split(",")) if part)


def parser() -> argparse.ArgumentParser:
    """The arguments the pipeline's processing job and ``panopipe prepare`` pass."""
    p = argparse.ArgumentParser(description="Prepare a raw image data set for training.")
    p.add_argument("--input", default=DEFAULT_INPUT, help="the data set folder (default: %(default)s)")
    p.add_argument("--output", default=DEFAULT_OUTPUT, help="where train/, validation/, report.json go")
    p.add_argument("--message-file", default=DEFAULT_MESSAGE_FILE, help="where a rejection's reason is written")
    p.add_argument(
        "--classes", nargs="+", type=_csv, required=True, help="model.classes in order (labels: their index)"
    )
    p.add_argument("--width", type=int, required=True)
    p.add_argument("--height", type=int, required=True)
    p.add_argument("--variations", type=int, default=2, help="variants written per training image")
    p.add_argument("--kinds", type=_csv, default=VARIATION_KINDS, help="comma-joined of lighting, skew, lens")
    p.add_argument("--validation-fraction", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--min-images-per-class", type=int, default=10)
    p.add_argument("--min-image-side", type=int, default=32)
    p.add_argument("--format", dest="output_format", choices=FORMATS, default="recordio")
    p.add_argument("--manifest", default=None, help="a Ground Truth manifest in the input folder")
    p.add_argument("--label-attribute", default="class")
    p.add_argument("--source-prefix", default=None, help="the s3:// prefix the input folder is a copy of")
    return p


def settings_from(arguments: argparse.Namespace) -> Settings:
    """Settings from parsed arguments, each checked (field, value, rule)."""
    problems = []
    if arguments.width < 1 or arguments.height < 1:
        problems.append(f"--width/--height = {arguments.width}x{arguments.height}: must be positive")
    if arguments.variations < 0:
        problems.append(f"--variations = {arguments.variations}: must be 0 or more")
    unknown = [k for k in arguments.kinds if k not in VARIATION_KINDS]
    if unknown:
        problems.append(f"--kinds = {unknown[0]!r}: must be among {', '.join(VARIATION_KINDS)}")
    if not 0 <= arguments.validation_fraction < 1:
        problems.append(f"--validation-fraction = {arguments.validation_fraction}: must be in [0, 1)")
    arguments.classes = tuple(name for names in arguments.classes for name in names)  # each, or comma-joined
    if not arguments.classes:
        problems.append("--classes: at least one class")
    if problems:
        raise SystemExit("; ".join(problems))
    return Settings(
        classes=tuple(arguments.classes),
        width=arguments.width,
        height=arguments.height,
        variations=arguments.variations,
        kinds=tuple(arguments.kinds),
        validation_fraction=arguments.validation_fraction,
        seed=arguments.seed,
        min_images_per_class=arguments.min_images_per_class,
        min_image_side=arguments.min_image_side,
        output_format=arguments.output_format,
        manifest=arguments.manifest,
        label_attribute=arguments.label_attribute,
        source_prefix=arguments.source_prefix,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run; exit 0, or :data:`EXIT_REJECTED` with the reason on stderr and in the message file."""
    arguments = parser().parse_args(argv)
    settings = settings_from(arguments)
    report = prepare(Path(arguments.input), Path(arguments.output), settings)
    document = report.document()
    if report.failure:
        reason = f"data set rejected: {report.failure}"
        print(reason, file=sys.stderr)
        try:
            message = Path(arguments.message_file)
            message.parent.mkdir(parents=True, exist_ok=True)
            message.write_bytes(reason.encode("utf-8")[:MESSAGE_LIMIT])
        except OSError as error:  # e.g. the CLI's default /opt/ml is not writable
            print(f"(could not write {arguments.message_file}: {error})", file=sys.stderr)
        return EXIT_REJECTED
    print(
        f"prepared {sum(document['images_before'].values())} images into {document['train_records']} train and "
        f"{document['validation_records']} validation records in {document['seconds']} s "
        f"({len(document['rejected'])} rejected)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
