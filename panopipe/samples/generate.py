"""The sample data set and camera frames, generated deterministically from images scikit-image ships.

Nothing is downloaded: ``skimage.data``'s files are inside the scikit-image wheel (0.26, pinned in
the dev dependencies). People come from ``astronaut.png`` (Eileen Collins), ``camera.png`` (the
cameraman) and the 100 faces of ``lfw_subset.npy`` (each drawn with a torso); backgrounds from
``brick``, ``grass``, ``gravel``, ``coffee``, ``rocket``, ``motorcycle_left``/``_right``, ``moon``
and ``hubble_deep_field``; the ``empty`` class gets things that are not people pasted the same way
(``chelsea`` the cat, the coffee cup, the rocket, a motorcycle, the horse) half of the time, so that
"something was pasted" does not mean "person". Scale, position, mirroring, brightness, contrast and
tint vary per image from a seeded generator: the same seed gives the same bytes (same Pillow/zlib).

- :func:`generate_dataset` writes ``<out>/person/*.png`` and ``<out>/empty/*.png`` (the classes of
  ``config/dev.yaml``), the raw-images input of the data preparation step;
- :func:`camera_frames` writes a camera-like sequence of 640x480 JPEG frames (a fixed scene per
  shot; a person walks through in every other shot) for the local appliance's camera;
- :func:`sample_dataset` is the sample a local run uploads: the data set at its standard size
  (:data:`SAMPLE_PER_CLASS` per class, 128 px), generated once into ``.panopipe/sample/``.

Run ``python -m panopipe.samples.generate OUT [--per-class N] [--seed S] [--frames N]``.
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter

#: Class folder names, in label order (config/dev.yaml: classes [empty, person]).
CLASSES = ("empty", "person")
_BACKGROUNDS = (
    "brick.png",
    "grass.png",
    "gravel.png",
    "coffee.png",
    "rocket.jpg",
    "motorcycle_left.png",
    "motorcycle_right.png",
    "moon.png",
    "hubble_deep_field.jpg",
)
#: (file, crop box left, top, right, bottom) of the people in skimage's photos.
_PEOPLE = (("astronaut.png", (20, 0, 370, 512)), ("camera.png", (20, 40, 300, 512)))
#: Things that are not people, pasted into ``empty`` images the way people are pasted into ``person`` ones.
_THINGS = (
    ("chelsea.png", (40, 0, 360, 300)),
    ("coffee.png", (80, 20, 520, 380)),
    ("rocket.jpg", (250, 0, 420, 427)),
    ("motorcycle_left.png", (0, 60, 741, 460)),
    ("horse.png", (0, 0, 400, 328)),
)
_FACES = 100  # lfw_subset.npy: 100 faces, then 100 non-faces
#: The sample's size: large enough for a validation accuracy clearly above the dev gate (0.8), small
#: enough to prepare and train in seconds on 2 cores (config/dev.yaml says what was measured).
SAMPLE_PER_CLASS = 100
#: Bump when the generated images change, so that cached samples are made again.
GENERATOR_VERSION = 1


@functools.cache
def _source(name: str) -> Image.Image:
    """One of skimage's bundled images, as RGB (the package's data folder; nothing fetched)."""
    import skimage.data

    image = Image.open(Path(skimage.data.__file__).parent / name)
    image.load()
    if image.mode == "RGBA":  # the horse: a black silhouette on transparent
        flat = Image.new("RGB", image.size, (255, 255, 255))
        flat.paste(image, mask=image.getchannel("A"))
        return flat
    return image.convert("RGB")


@functools.cache
def _faces() -> NDArray[np.uint8]:
    import skimage.data

    faces = np.load(Path(skimage.data.__file__).parent / "lfw_subset.npy")[:_FACES]
    return np.asarray(np.clip(faces * 255.0, 0, 255), dtype=np.uint8)


def _oval_mask(size: tuple[int, int], feather: float) -> Image.Image:
    """A soft-edged oval alpha mask: a pasted figure without a hard rectangular outline."""
    mask = Image.new("L", size, 0)
    w, h = size
    inset = max(1, int(min(w, h) * 0.06))
    ImageDraw.Draw(mask).ellipse((inset, inset, w - inset, h - inset), fill=255)
    return mask.filter(ImageFilter.GaussianBlur(max(1.0, feather * min(w, h))))


def _tint(image: Image.Image, rng: np.random.Generator, strength: float) -> Image.Image:
    """Multiply each channel by a factor near 1 (lighting colour)."""
    factors = 1.0 + rng.uniform(-strength, strength, 3)
    array = np.asarray(image, dtype=np.float32) * factors
    return Image.fromarray(np.asarray(np.clip(array, 0, 255), dtype=np.uint8))


def _background(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """A random crop of a random background photo, scaled to ``width`` x ``height``, with varied light."""
    photo = _source(_BACKGROUNDS[int(rng.integers(len(_BACKGROUNDS)))])
    pw, ph = photo.size
    aspect = width / height
    crop_h = int(ph * rng.uniform(0.45, 1.0))
    crop_w = min(pw, int(crop_h * aspect))
    crop_h = min(ph, int(crop_w / aspect))
    left, top = int(rng.integers(0, pw - crop_w + 1)), int(rng.integers(0, ph - crop_h + 1))
    image = photo.crop((left, top, left + crop_w, top + crop_h)).resize((width, height), Image.Resampling.BILINEAR)
    if rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return _tint(image, rng, 0.25)


def _person(rng: np.random.Generator) -> Image.Image:
    """A person cut-out: the astronaut, the cameraman, or an LFW face drawn with a torso."""
    choice = int(rng.integers(len(_PEOPLE) + 1))
    if choice < len(_PEOPLE):
        name, box = _PEOPLE[choice]
        figure = _source(name).crop(box)
    else:
        face = Image.fromarray(_faces()[int(rng.integers(_FACES))]).convert("RGB").resize((60, 72))
        figure = Image.new("RGB", (110, 200), (0, 0, 0))
        shirt = tuple(int(v) for v in rng.integers(20, 235, 3))
        draw = ImageDraw.Draw(figure)
        draw.rounded_rectangle((8, 80, 102, 200), radius=28, fill=shirt)  # shoulders and torso
        draw.rectangle((42, 66, 68, 86), fill=tuple(int(v * 0.8) for v in shirt))  # neck / collar
        figure.paste(face, (25, 4))
    return _tint(figure, rng, 0.2)


def _thing(rng: np.random.Generator) -> Image.Image:
    """Something that is not a person, cut out like a person is."""
    name, box = _THINGS[int(rng.integers(len(_THINGS)))]
    return _tint(_source(name).crop(box), rng, 0.2)


def _paste(canvas: Image.Image, figure: Image.Image, rng: np.random.Generator, x_center: float | None = None) -> None:
    """Paste ``figure`` (scaled to 50-95 % of the canvas height, soft oval edge) standing on the ground."""
    width, height = canvas.size
    scale = rng.uniform(0.5, 0.95) * height / figure.height
    size = (max(4, int(figure.width * scale)), max(4, int(figure.height * scale)))
    figure = figure.resize(size, Image.Resampling.BILINEAR)
    if rng.random() < 0.5:
        figure = figure.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    figure = ImageEnhance.Brightness(figure).enhance(rng.uniform(0.7, 1.3))
    center = x_center if x_center is not None else rng.uniform(0.25, 0.75) * width
    left = int(center - size[0] / 2)
    top = height - size[1] + int(rng.integers(0, max(1, height // 10)))
    canvas.paste(figure, (left, top), _oval_mask(size, 0.04))


def _finish(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Whole-frame lighting: brightness and contrast."""
    image = ImageEnhance.Brightness(image).enhance(rng.uniform(0.6, 1.3))
    return ImageEnhance.Contrast(image).enhance(rng.uniform(0.7, 1.3))


def compose(rng: np.random.Generator, width: int, height: int, person: bool) -> Image.Image:
    """One image: a background with a person (``person``) or, half of the time, a non-person thing."""
    canvas = _background(rng, width, height)
    if person:
        _paste(canvas, _person(rng), rng)
    elif rng.random() < 0.5:
        _paste(canvas, _thing(rng), rng)
    return _finish(canvas, rng)


def generate_dataset(out_dir: Path, per_class: int = 150, seed: int = 0, size: int = 128) -> Path:
    """Write ``per_class`` ``size`` x ``size`` PNGs into ``out_dir/<class>/``; returns ``out_dir``.

    Images alternate between the classes so that any prefix of the sequence is balanced.
    """
    out_dir = Path(out_dir)
    for name in CLASSES:
        (out_dir / name).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for index in range(per_class):
        for name in CLASSES:
            image = compose(rng, size, size, person=name == "person")
            image.save(out_dir / name / f"{name}_{index:04d}.png", optimize=False)
    return out_dir


@dataclass(frozen=True)
class _Shot:
    """A run of frames of one scene: its first frame index, length, and whether a person walks through."""

    start: int
    length: int
    person: bool


def camera_frames(out_dir: Path, count: int, seed: int = 0, shot_length: int = 20) -> list[Path]:
    """Write ``count`` 640x480 JPEG frames ``frame_00000.jpg``... into ``out_dir``; returns their paths.

    Shots of ``shot_length`` frames alternate between an empty scene and one a person walks across
    (left to right or back); the scene's background, light and the person stay the same within a shot.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    width, height = 640, 480
    paths: list[Path] = []
    shots = [
        _Shot(start, min(shot_length, count - start), (start // shot_length) % 2 == 1)
        for start in range(0, count, shot_length)
    ]
    for shot in shots:
        shot_seed = int(rng.integers(2**31))
        direction = 1 if rng.random() < 0.5 else -1
        for step in range(shot.length):
            frame_rng = np.random.default_rng(shot_seed)  # the same scene (and person) for the whole shot
            canvas = _background(frame_rng, width, height)
            if shot.person:
                progress = (step + 0.5) / shot.length
                x = width * (0.15 + 0.7 * (progress if direction > 0 else 1 - progress))
                _paste(canvas, _person(frame_rng), frame_rng, x_center=x)
            frame = _finish(canvas, frame_rng)
            path = out_dir / f"frame_{shot.start + step:05d}.jpg"
            frame.save(path, quality=90)
            paths.append(path)
    return paths


def sample_dataset(cache: Path | None = None) -> Path:
    """The standard sample (seed 0), generated into ``cache`` (default ``.panopipe/sample``) on first use.

    A folder per version and size, written under a temporary name and renamed into place: a
    concurrent or interrupted first use never leaves a partial sample behind.
    """
    from panopipe.project import ROOT

    folder = (cache or ROOT / ".panopipe" / "sample") / f"dataset-v{GENERATOR_VERSION}-{SAMPLE_PER_CLASS}"
    if folder.is_dir():
        return folder
    building = folder.with_name(f"{folder.name}.building-{os.getpid()}")
    shutil.rmtree(building, ignore_errors=True)
    generate_dataset(building, per_class=SAMPLE_PER_CLASS, seed=0)
    try:
        building.rename(folder)
    except OSError:  # another process finished first
        shutil.rmtree(building, ignore_errors=True)
    return folder


def main(argv: Sequence[str] | None = None) -> int:
    """Generate the data set (and optionally camera frames) from the command line."""
    parser = argparse.ArgumentParser(prog="python -m panopipe.samples.generate", description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--per-class", type=int, default=150)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--frames", type=int, default=0, help="also write this many camera frames into OUT/frames")
    args = parser.parse_args(argv)
    generate_dataset(args.out, args.per_class, args.seed, args.size)
    if args.frames:
        camera_frames(args.out / "frames", args.frames, args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
