"""Set process environment variables for a while and put them back: one implementation for every caller."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager


def restore(saved: Mapping[str, str | None]) -> None:
    """Put back what ``saved`` recorded (None: the variable was not set)."""
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@contextmanager
def environment(values: Mapping[str, str], cleared: Iterable[str] = ()) -> Iterator[None]:
    """``os.environ`` without ``cleared`` and with ``values`` inside the block, as it was after it."""
    saved = {name: os.environ.pop(name, None) for name in {*cleared, *values}}
    os.environ.update(values)
    try:
        yield
    finally:
        restore(saved)
