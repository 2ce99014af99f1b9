"""Each test gets the "panorama_app" logger as it found it (the device entry gives it its own handler)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _restore_app_logger() -> Iterator[None]:
    logger = logging.getLogger("panorama_app")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = saved[0], saved[1], saved[2]
    sys.modules.pop("panorama_app.device_entry", None)  # imported against a fake SDK
