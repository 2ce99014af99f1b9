"""The script-mode source archive: a deterministic ``tar.gz`` of the training code, made at synth.

SageMaker's framework containers download ``sagemaker_submit_directory`` and unpack it as gzipped
tar, so a zipped directory asset will not do. The archive is built with the standard library
(no subprocess), with sorted entries, zero mtimes and root ownership, so the same sources always
give the same bytes and the same asset hash: an unchanged model does not redeploy.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from pathlib import Path

_SKIPPED_DIRS = {"__pycache__", ".git", ".venv", "node_modules", ".mypy_cache", ".pytest_cache", ".ruff_cache"}


def _files(directory: Path) -> list[Path]:
    found = []
    for path in sorted(directory.rglob("*")):
        relative = path.relative_to(directory)
        if any(part in _SKIPPED_DIRS or part.startswith(".") for part in relative.parts):
            continue
        if path.is_file() and path.suffix != ".pyc":
            found.append(path)
    return found


def archive_bytes(directory: Path) -> bytes:
    """The gzipped tar of ``directory``'s files, identical for identical contents."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in _files(directory):
            data = path.read_bytes()
            info = tarfile.TarInfo(path.relative_to(directory).as_posix())
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(raw.getvalue(), mtime=0)


def write_archive(directory: Path, out_dir: Path) -> Path:
    """Write the archive as ``<sha256>.tar.gz`` under ``out_dir`` (kept if already there)."""
    data = archive_bytes(directory)
    target = out_dir / f"{hashlib.sha256(data).hexdigest()}.tar.gz"
    if not target.exists():
        out_dir.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".partial")
        partial.write_bytes(data)
        partial.replace(target)
    return target
