"""Names derived from the data and the run, so that a retry or a second trigger starts nothing twice.

Step Functions refuses a second execution with the same name (for 90 days), and SageMaker refuses a
second job with the same name: deriving both from the data set version makes duplicates impossible.
"""

from __future__ import annotations

import hashlib
import re

#: Step Functions execution names: 1-80 chars; we keep to what SageMaker job names accept too.
_UNSAFE = re.compile(r"[^A-Za-z0-9-]+")
EXECUTION_NAME_MAX = 80
JOB_NAME_MAX = 63


def _slug(text: str, limit: int) -> str:
    return _UNSAFE.sub("-", text).strip("-")[:limit].strip("-") or "x"


def _digest(*parts: str, length: int = 12) -> str:
    return hashlib.sha256("\x00".join(parts).encode("utf-8")).hexdigest()[:length]


def execution_name(bucket: str, prefix: str, version: str) -> str:
    """The run name for one version of a data set (``version``: the marker's VersionId or ETag).

    ``ds-<last path segment>-<12 hex of bucket/prefix/version>``, at most 80 characters.
    """
    segment = prefix.rstrip("/").rsplit("/", 1)[-1]
    return f"ds-{_slug(segment, 40)}-{_digest(bucket, prefix, version)}"


def job_name(prefix: str, kind: str, run: str) -> str:
    """A SageMaker job name (``^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}``) unique to this run and kind.

    Long run names are shortened and suffixed with a digest, so distinct runs never collide.
    """
    full = f"{prefix}-{kind}-{run}"
    if len(full) <= JOB_NAME_MAX and not _UNSAFE.search(full):
        return full
    return f"{_slug(full, JOB_NAME_MAX - 11)}-{_digest(full, length=10)}"
