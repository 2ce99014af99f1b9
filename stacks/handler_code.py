"""The one Lambda asset every handler ships in: ``lambda_handlers/`` plus the manifest builders.

The deploy step builds Panorama manifests with ``panorama_app.manifest`` (standard library only), so
the asset is the repository root filtered down to those two packages; plain ``Code.from_asset``,
no bundling, no Docker.
"""

from __future__ import annotations

from pathlib import Path

from aws_cdk import IgnoreMode
from aws_cdk import aws_lambda as lambda_

ROOT = Path(__file__).resolve().parent.parent
RUNTIME = lambda_.Runtime.PYTHON_3_14

#: Everything at the top level is left out except the two packages (glob rules, later ones win).
ASSET_EXCLUDE = (
    "*",
    ".*",
    "!lambda_handlers",
    "!lambda_handlers/**",
    "!panorama_app",
    "!panorama_app/__init__.py",
    "!panorama_app/manifest",
    "!panorama_app/manifest/**",
    "**/__pycache__",
    "**/*.pyc",
)


def handler_code() -> lambda_.Code:
    """A fresh ``Code`` for one function (CDK stages the same directory once per hash)."""
    return lambda_.Code.from_asset(str(ROOT), exclude=list(ASSET_EXCLUDE), ignore_mode=IgnoreMode.GLOB)


def handler_path(module: str, function: str) -> str:
    """The Lambda ``handler`` setting for ``lambda_handlers.<module>.<function>``."""
    return f"lambda_handlers.{module}.{function}"
