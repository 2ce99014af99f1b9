"""How many training samples a data set holds, counted when the run's input is validated.

The built-in image-classification algorithm requires ``num_training_samples`` and uses it for its
learning-rate schedule and epochs: a value fixed in the config is wrong for every new data set. So
the validate step counts what the train channel holds, streaming (nothing is held in memory):

- RecordIO (``.rec``, MXNet's format): each record is a 4-byte magic ``0xced7230a``, a 4-byte
  length word (upper 3 bits: continuation flag, lower 29: length), and the data padded to 4 bytes;
  a record split in parts (flag 1 = first, 2 = middle, 3 = last) counts once;
- a Ground Truth augmented manifest: one JSON object per non-empty line.

A file that is not RecordIO, or ends inside a record, is refused with the file's name.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

MAGIC = 0xCED7230A
_HEADER = struct.Struct("<II")
_LENGTH_MASK = (1 << 29) - 1
_CHUNK = 8 * 1024 * 1024


class NotRecordIO(ValueError):
    """The bytes are not MXNet RecordIO (or end inside a record); the message says where."""


def count_recordio(chunks: Iterable[bytes]) -> int:
    """Records in a RecordIO stream given as chunks of any size."""
    pending, skip, count, offset = bytearray(), 0, 0, 0
    for chunk in chunks:
        if skip:
            dropped = min(skip, len(chunk))
            chunk, skip, offset = chunk[dropped:], skip - dropped, offset + dropped
        pending += chunk
        while len(pending) >= _HEADER.size:
            magic, word = _HEADER.unpack_from(pending)
            if magic != MAGIC:
                raise NotRecordIO(f"no RecordIO record header at byte {offset} (magic {magic:#010x})")
            length = word & _LENGTH_MASK
            if word >> 29 in (0, 1):  # a whole record, or the first part of a split one
                count += 1
            total = _HEADER.size + ((length + 3) & ~3)
            if len(pending) >= total:
                del pending[:total]
                offset += total
            else:
                skip, offset = total - len(pending), offset + len(pending)
                pending.clear()
    if pending or skip:
        raise NotRecordIO(f"the file ends inside a record (at byte {offset + len(pending)})")
    return count


def count_lines(chunks: Iterable[bytes]) -> int:
    """Non-empty lines of a text stream (a manifest's records)."""
    count, partial = 0, b""
    for chunk in chunks:
        lines = (partial + chunk).split(b"\n")
        partial = lines.pop()
        count += sum(1 for line in lines if line.strip())
    return count + (1 if partial.strip() else 0)


def object_chunks(s3: S3Client, bucket: str, key: str) -> Iterable[bytes]:
    """An S3 object's bytes, streamed."""
    body = s3.get_object(Bucket=bucket, Key=key)["Body"]
    yield from body.iter_chunks(_CHUNK)
