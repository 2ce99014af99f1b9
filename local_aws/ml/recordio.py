"""MXNet RecordIO as im2rec writes it, in plain Python: the built-in image-classification algorithm's input.

A file is a sequence of records, each ``<magic 0xced7230a><length word><payload><0-3 zero bytes to a
multiple of 4>``; the length word holds the payload's length in its low 29 bits and a continuation
flag in its top 3 (0: whole record; 1, 2, 3: first, middle, last part of a record that contained the
magic number). An image record's payload is an ``IRHeader`` (``struct '<IfQQ'``: flag, label, id,
id2; with flag > 0, that many float32 labels follow) and the encoded image (JPEG or PNG).

Pure Python, so that the local AWS's tests (project venv) write what the stand-in algorithm (ML
venv, which also has mxnet's own reader) reads; the same layout as ``lambda_handlers.dataset_records``
counts.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO, NamedTuple

MAGIC = 0xCED7230A
_MAGIC_BYTES = struct.pack("<I", MAGIC)
_HEADER = struct.Struct("<IfQQ")


class ImageRecord(NamedTuple):
    """One image of a RecordIO file: its label(s), id and encoded bytes."""

    label: float | tuple[float, ...]
    id: int
    image: bytes


class RecordIOError(ValueError):
    """The bytes are not RecordIO (a bad magic number, a truncated record)."""


def pack(label: float | Iterable[float], image: bytes, record_id: int = 0) -> bytes:
    """An image record's payload: IRHeader (one label, or flag = count and the labels) then the image."""
    if isinstance(label, (int, float)):
        return _HEADER.pack(0, float(label), record_id, 0) + image
    labels = [float(value) for value in label]
    return _HEADER.pack(len(labels), 0.0, record_id, 0) + struct.pack(f"<{len(labels)}f", *labels) + image


def unpack(payload: bytes) -> ImageRecord:
    """The label(s), id and image bytes of an image record's payload."""
    if len(payload) < _HEADER.size:
        raise RecordIOError(f"a record of {len(payload)} bytes has no image header")
    flag, label, record_id, _ = _HEADER.unpack_from(payload)
    if flag == 0:
        return ImageRecord(label, record_id, payload[_HEADER.size :])
    end = _HEADER.size + 4 * flag
    return ImageRecord(struct.unpack_from(f"<{flag}f", payload, _HEADER.size), record_id, payload[end:])


def _frame(payload: bytes) -> bytes:
    """One record's framing. A payload containing the magic number is split there (cflag 1/2/3), as dmlc does."""
    parts = payload.split(_MAGIC_BYTES)
    if len(parts) == 1:
        return _chunk(0, payload)
    out = []
    for index, part in enumerate(parts):
        flag = 1 if index == 0 else 3 if index == len(parts) - 1 else 2
        out.append(_chunk(flag, part))
    return b"".join(out)


def _chunk(flag: int, data: bytes) -> bytes:
    return struct.pack("<II", MAGIC, (flag << 29) | len(data)) + data + b"\0" * (-len(data) % 4)


def write(path: Path, records: Iterable[bytes]) -> int:
    """Write payloads (see :func:`pack`) as a RecordIO file; returns how many."""
    count = 0
    with open(path, "wb") as out:
        for payload in records:
            out.write(_frame(payload))
            count += 1
    return count


def payloads(stream: BinaryIO) -> Iterator[bytes]:
    """The payloads of a RecordIO stream, parts joined (with the magic number between them, as written)."""
    pending: list[bytes] = []
    while True:
        head = stream.read(8)
        if not head:
            break
        if len(head) < 8:
            raise RecordIOError("a truncated record header")
        magic, word = struct.unpack("<II", head)
        if magic != MAGIC:
            raise RecordIOError(f"bad magic number {magic:#x}: not a RecordIO file")
        flag, length = word >> 29, word & ((1 << 29) - 1)
        data = stream.read(length)
        if len(data) < length:
            raise RecordIOError("a truncated record")
        stream.read(-length % 4)
        if flag == 0:
            yield data
        elif flag == 1:
            pending = [data]
        else:
            pending.append(data)
            if flag == 3:
                yield _MAGIC_BYTES.join(pending)
                pending = []


def read(path: Path) -> list[ImageRecord]:
    """Every image record of a RecordIO file."""
    with open(path, "rb") as stream:
        return [unpack(payload) for payload in payloads(stream)]
