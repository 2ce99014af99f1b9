"""Counting a data set's samples: RecordIO records and manifest lines, streamed in chunks of any size."""

from __future__ import annotations

import pytest

from lambda_handlers.dataset_records import NotRecordIO, count_lines, count_recordio
from tests.handlers.conftest import manifest_lines, recordio


def chunked(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)] or [b""]


PAYLOADS = [bytes([n]) * n for n in range(1, 40)]  # lengths 1-39: every padding


@pytest.mark.parametrize("size", [1, 3, 7, 8, 64, 1 << 20])
def test_records_are_counted_whatever_the_chunk_boundaries(size: int) -> None:
    assert count_recordio(chunked(recordio(*PAYLOADS), size)) == len(PAYLOADS)
    assert count_recordio(chunked(recordio(*PAYLOADS, split=True), size)) == len(PAYLOADS), "a split record is one"


def test_an_empty_stream_has_no_records() -> None:
    assert count_recordio([b""]) == 0


@pytest.mark.parametrize(
    ("data", "where"),
    [
        (b"\x00" * 8, "no RecordIO record header at byte 0"),
        (recordio(b"abc") + b"\x0a\x23\xd7", "the file ends inside a record (at byte 15)"),
        (recordio(b"abcdef")[:-1], "the file ends inside a record (at byte 15)"),
    ],
)
def test_what_is_not_recordio_is_refused_with_where(data: bytes, where: str) -> None:
    with pytest.raises(NotRecordIO, match=where.replace("(", r"\(").replace(")", r"\)")):
        count_recordio(chunked(data, 5))


@pytest.mark.parametrize("size", [1, 10, 1000])
def test_manifest_lines_are_counted_blank_lines_not(size: int) -> None:
    data = manifest_lines("s3://b/a.jpg", "s3://b/b.jpg", "s3://b/c.jpg") + b"\n  \n"
    assert count_lines(chunked(data, size)) == 3
    assert count_lines(chunked(data.rstrip(b"\n "), size)) == 3, "no newline after the last line"
