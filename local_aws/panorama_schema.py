"""The official Panorama manifest schemas, as the local Panorama service checks documents with them.

The real service refuses a ``package.json`` or an asset descriptor that breaks AWS's published
schemas (``panorama_manifest_schema/``, draft-07, a copy of the developer guide's). The project's
own builders check the same rules in Python (``panorama_app.manifest``), but the emulator must not
trust the product's reading of the rules it is there to test: it validates with the schemas
themselves (``jsonschema``, pinned with the development dependencies the emulator runs on).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

SCHEMA_DIR = Path(__file__).resolve().parent / "panorama_manifest_schema"
PACKAGE = "nodePackage.schema.json"
DESCRIPTOR = "assetDescriptor.schema.json"
GRAPH = "nodeGraph.schema.json"
OVERRIDES = "nodeGraphOverrides.schema.json"


@cache
def _validator(name: str) -> Any:
    """A draft-07 validator of ``name``, resolving its relative ``$ref``s from :data:`SCHEMA_DIR`."""
    from jsonschema import Draft7Validator
    from referencing import Registry, Resource

    def retrieve(uri: str) -> Resource[Any]:
        return Resource.from_contents(json.loads(Path(uri.removeprefix("file://")).read_text()))

    path = SCHEMA_DIR / name
    schema = json.loads(path.read_text())
    schema["$id"] = path.as_uri()
    return Draft7Validator(schema, registry=Registry(retrieve=retrieve))  # type: ignore[call-arg]


def schema_problems(name: str, document: Any) -> list[str]:
    """What in ``document`` breaks the official schema ``name``: ``"$.path: message"`` lines, in document order."""
    problems = []
    for error in sorted(_validator(name).iter_errors(document), key=lambda e: [str(p) for p in e.absolute_path]):
        path = "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
        problems.append(f"{path}: {error.message}")
    return problems
