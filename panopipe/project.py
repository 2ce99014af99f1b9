"""Where the project is: the checkout holding this package, whatever folder a command runs from.

``panopipe`` is installed into the project's venv in editable mode (``make local``/``make test``),
so this file is the checkout's own: its parent is the project root, where ``config/``,
``cdk.json``, ``node_modules/`` and ``.panopipe/`` live. Importing this module imports nothing else.
"""

from __future__ import annotations

from pathlib import Path

#: The checkout's root directory.
ROOT = Path(__file__).resolve().parent.parent


def locate(path: Path) -> Path:
    """``path`` as given if absolute or found from the current folder, else under the project root.

    The project root is the fallback even when the file is not there either: the error then names
    the project's path, which is where the default files live.
    """
    if path.is_absolute() or path.exists():
        return path
    return ROOT / path


def searched(path: Path) -> str:
    """Where :func:`locate` looked for ``path``, for a "not found" message."""
    if path.is_absolute():
        return str(path)
    return f"{path} (looked in {Path.cwd()} and in the project, {ROOT})"
