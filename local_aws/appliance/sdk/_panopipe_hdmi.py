"""The appliance's HDMI output, as files a person can open: a video per stream, a contact sheet, counts.

Part of the ``panoramasdk`` stand-in (imported by it; nothing of the project, which is not on the
application's path). The device draws what the application adds to a media object (``add_rect``,
``add_label``) onto the frame it shows; here the annotated frames go to ``hdmi-<stream>.avi``
(Motion JPEG, OpenCV's own writer) and a sample of them to ``contact-sheet.png``. Per-class counts
are read from what the screen shows: a label of the form ``<class>: <n>, <class>: <n>`` (the
application's count line), summed in ``counts.json``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import cv2
import numpy as np

_COUNT_LINE = re.compile(r"^\s*[^:,]+:\s*\d+\s*(,\s*[^:,]+:\s*\d+\s*)*$")
_SHEET_TILES = 16
_TILE_WIDTH = 400
_FPS = 10.0
_JPEG_QUALITY = 80
_BOX = (0, 255, 0)
_TEXT = (255, 255, 255)


def annotate(image: Any, rects: list[tuple[float, ...]], labels: list[tuple[str, float, float]]) -> Any:
    """A copy of the BGR frame with the rectangles and labels drawn (coordinates are 0–1 of the frame)."""
    frame = np.ascontiguousarray(image, dtype=np.uint8).copy()
    height, width = frame.shape[:2]
    scale = max(0.5, 0.8 * width / 640)
    thickness = max(1, round(scale * 1.5))
    for x1, y1, x2, y2 in rects:
        cv2.rectangle(frame, (int(x1 * width), int(y1 * height)), (int(x2 * width), int(y2 * height)), _BOX, 2)
    for text, x, y in labels:
        origin = (int(x * width), max(12, int(y * height)))
        cv2.putText(frame, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thickness + 3, cv2.LINE_AA)
        cv2.putText(frame, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, _TEXT, thickness, cv2.LINE_AA)
    return frame


def counts_of(labels: list[tuple[str, float, float]]) -> dict[str, int] | None:
    """The counts a frame's count line shows (``person: 1, empty: 0``), or None without one."""
    for text, _, _ in labels:
        if _COUNT_LINE.match(text):
            pairs = (part.rsplit(":", 1) for part in text.split(","))
            return {name.strip(): int(count) for name, count in pairs}
    return None


class HdmiOutput:
    """Collects the frames the application puts on its video output and writes them under ``folder``."""

    def __init__(self, folder: Path, expected_frames: int) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self._every = max(1, expected_frames // _SHEET_TILES)
        self._writers: dict[str, Any] = {}
        self._tiles: list[Any] = []
        self.frames = 0
        self.counts: dict[str, dict[str, Any]] = {}

    def show(
        self, stream_id: str, image: Any, rects: list[tuple[float, ...]], labels: list[tuple[str, float, float]]
    ) -> None:
        """One annotated frame of one stream."""
        frame = annotate(image, rects, labels)
        writer = self._writers.get(stream_id)
        if writer is None:
            path = self.folder / f"hdmi-{_safe(stream_id)}.avi"
            fourcc = cv2.VideoWriter.fourcc(*"MJPG")
            writer = cv2.VideoWriter(str(path), fourcc, _FPS, (frame.shape[1], frame.shape[0]))
            writer.set(cv2.VIDEOWRITER_PROP_QUALITY, _JPEG_QUALITY)
            self._writers[stream_id] = writer
        writer.write(frame)
        seen = self.counts.setdefault(stream_id, {"frames": 0, "frames_counted": 0, "objects": {}})
        if seen["frames"] % self._every == 0 and len(self._tiles) < _SHEET_TILES:
            tile_height = round(frame.shape[0] * _TILE_WIDTH / frame.shape[1])
            self._tiles.append(cv2.resize(frame, (_TILE_WIDTH, tile_height), interpolation=cv2.INTER_AREA))
        seen["frames"] += 1
        shown = counts_of(labels)
        if shown is not None:
            seen["frames_counted"] += 1
            for name, count in shown.items():
                seen["objects"][name] = seen["objects"].get(name, 0) + count

    def close(self, stats: dict[str, Any]) -> dict[str, Path]:
        """Finish the videos; write the contact sheet, ``counts.json`` and ``stats.json``; return the paths."""
        paths: dict[str, Path] = {}
        for stream_id, writer in self._writers.items():
            writer.release()
            paths[f"video {stream_id}"] = self.folder / f"hdmi-{_safe(stream_id)}.avi"
        self._writers.clear()
        if self._tiles:
            sheet = self.folder / "contact-sheet.png"
            cv2.imwrite(str(sheet), _sheet(self._tiles))
            paths["contact sheet"] = sheet
        counts = self.folder / "counts.json"
        counts.write_text(json.dumps({"streams": self.counts}, indent=1, sort_keys=True) + "\n")
        (self.folder / "stats.json").write_text(json.dumps(stats, indent=1, sort_keys=True) + "\n")
        paths["counts"] = counts
        return paths


def _sheet(tiles: list[Any]) -> Any:
    columns = min(4, len(tiles))
    rows = -(-len(tiles) // columns)
    height = max(tile.shape[0] for tile in tiles)
    sheet = np.zeros((rows * height, columns * _TILE_WIDTH, 3), np.uint8)
    for index, tile in enumerate(tiles):
        row, column = divmod(index, columns)
        sheet[row * height : row * height + tile.shape[0], column * _TILE_WIDTH : (column + 1) * _TILE_WIDTH] = tile
    return sheet


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)
