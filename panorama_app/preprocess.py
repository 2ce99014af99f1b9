"""Camera frame → model input, fast: resize the uint8 image, then one table lookup per channel.

Per-frame cost is memory traffic, not arithmetic. The naive path (resize, ``astype(float32)``,
divide, split, normalize each channel into a new array) writes the full float image four or five
times. Here the frame is resized while still uint8 (1 byte a pixel), and each channel is converted
uint8 → normalized float32 by a 256-entry lookup table written straight into its plane of a
buffer that is reused from frame to frame; BGR→RGB costs nothing (we pick the source channel), and
the letterbox padding is written once per frame geometry, not per frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

#: ImageNet statistics on 0–1 RGB (GluonCV SSD and most classifiers).
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
#: The ``input_scaling`` graph parameter → Preprocessor's (mean, std) on 0-1 pixels. ``raw`` gives the
#: 0-255 values themselves: the built-in image-classification network normalizes its own input.
SCALINGS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "imagenet": (MEAN, STD),
    "raw": ((0.0, 0.0, 0.0), (1 / 255, 1 / 255, 1 / 255)),
}

Image = npt.NDArray[np.uint8]
Tensor = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Letterbox:
    """Where the frame sits in the model input: ``input = frame * scale + pad``."""

    scale_x: float
    scale_y: float
    pad_x: int
    pad_y: int
    width: int  # resized frame, in input pixels
    height: int
    frame_width: int
    frame_height: int

    def to_frame(self, boxes: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
        """Boxes (n, 4: xmin, ymin, xmax, ymax) in input pixels → 0–1 frame coordinates, clipped."""
        out = np.empty(boxes.shape, dtype=np.float32)
        out[:, 0::2] = (boxes[:, 0::2] - self.pad_x) / (self.scale_x * self.frame_width)
        out[:, 1::2] = (boxes[:, 1::2] - self.pad_y) / (self.scale_y * self.frame_height)
        np.clip(out, 0.0, 1.0, out=out)
        return out


class Preprocessor:
    """Letterbox (or stretch) a BGR uint8 frame of any size into a normalized float32 input.

    The returned array is a buffer owned by this object: it is valid until the next call.
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        layout: str = "NCHW",
        *,
        mean: tuple[float, float, float] = MEAN,
        std: tuple[float, float, float] = STD,
        letterbox: bool = True,
        pad_value: int = 0,
    ) -> None:
        if len(input_shape) != 4 or layout not in ("NCHW", "NHWC"):
            raise ValueError(f"input shape {input_shape} with layout {layout!r}: need 4 dims and NCHW or NHWC")
        channels, self.height, self.width = (
            (input_shape[1], input_shape[2], input_shape[3])
            if layout == "NCHW"
            else (input_shape[3], input_shape[1], input_shape[2])
        )
        if channels != 3:
            raise ValueError(f"input shape {input_shape}: the camera gives 3 channels, the model takes {channels}")
        self.layout = layout
        self.letterbox = letterbox
        self.pad_value = pad_value
        values = np.arange(256, dtype=np.float64)
        # Row c converts channel c of RGB: (v / 255 - mean[c]) / std[c], computed in 0-255 units so
        # that the raw scaling gives the pixel values exactly.
        self._tables = np.stack([(values - 255 * m) / (255 * s) for m, s in zip(mean, std)]).astype(np.float32)
        self._buffer: Tensor = np.empty(tuple(input_shape), dtype=np.float32)
        self._geometry: Letterbox | None = None

    def _fit(self, frame_width: int, frame_height: int) -> Letterbox:
        if not self.letterbox:
            sx, sy = self.width / frame_width, self.height / frame_height
            return Letterbox(sx, sy, 0, 0, self.width, self.height, frame_width, frame_height)
        scale = min(self.width / frame_width, self.height / frame_height)
        width = max(1, min(self.width, round(frame_width * scale)))
        height = max(1, min(self.height, round(frame_height * scale)))
        pad_x, pad_y = (self.width - width) // 2, (self.height - height) // 2
        return Letterbox(
            width / frame_width, height / frame_height, pad_x, pad_y, width, height, frame_width, frame_height
        )

    def _plane(self, channel: int, geometry: Letterbox) -> Tensor:
        rows = slice(geometry.pad_y, geometry.pad_y + geometry.height)
        cols = slice(geometry.pad_x, geometry.pad_x + geometry.width)
        if self.layout == "NCHW":
            return self._buffer[0, channel, rows, cols]
        return self._buffer[0, rows, cols, channel]

    def __call__(self, frame: Image) -> tuple[Tensor, Letterbox]:
        """Return (input tensor, geometry) for one BGR frame (H, W, 3, uint8)."""
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ValueError(f"expected a BGR uint8 frame (H, W, 3), got {frame.dtype} {frame.shape}")
        height, width = frame.shape[:2]
        geometry = self._geometry
        if geometry is None or (geometry.frame_width, geometry.frame_height) != (width, height):
            geometry = self._geometry = self._fit(width, height)
            for channel in range(3):  # padding: once per geometry
                if self.layout == "NCHW":
                    self._buffer[0, channel] = self._tables[channel][self.pad_value]
                else:
                    self._buffer[0, :, :, channel] = self._tables[channel][self.pad_value]
        resized: Image = (
            frame
            if (geometry.width, geometry.height) == (width, height)
            else np.asarray(
                cv2.resize(frame, (geometry.width, geometry.height), interpolation=cv2.INTER_LINEAR), np.uint8
            )
        )
        for channel in range(3):  # RGB channel c comes from BGR channel 2 - c
            np.take(self._tables[channel], resized[:, :, 2 - channel], out=self._plane(channel, geometry), mode="clip")
        return self._buffer, geometry
