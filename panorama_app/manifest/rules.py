"""A small, dependency-free checker for the Panorama manifest schemas' rules.

The official JSON schemas (draft-07) are enforced here as plain tables of field rules, so the same
checks run in a Lambda function (no jsonschema there), in the local Panorama service and at synth
time. ``tests/panorama_app/test_manifest.py`` proves that what the builders produce also
validates against the official schema files.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

ENVELOPE_VERSION = "2021-01-01"


class ManifestError(ValueError):
    """A manifest document breaks a rule; ``problems`` lists each as ``path: rule``."""

    def __init__(self, document: str, problems: list[str]) -> None:
        self.document = document
        self.problems = tuple(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid {document} ({len(self.problems)} problem(s)):\n{lines}")


@dataclass(frozen=True)
class Rule:
    """What one field may hold (a subset of JSON schema: type, pattern, enum, lengths, items)."""

    kind: type | tuple[type, ...]
    pattern: str | None = None
    enum: tuple[Any, ...] | None = None
    min_length: int | None = None
    max_length: int | None = None
    items: Rule | Shape | None = None
    shape: Shape | None = None
    check: Callable[[Any], str | None] | None = None


@dataclass(frozen=True)
class Shape:
    """An object's fields: their rules, which are required, and no others allowed."""

    fields: Mapping[str, Rule]
    required: frozenset[str] = field(default_factory=frozenset)


def _type_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {
        dict: "an object",
        list: "an array",
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "a boolean",
    }
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _is(value: Any, kind: type | tuple[type, ...]) -> bool:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool):
        return bool in kinds
    if float in kinds and isinstance(value, int):
        return True
    return isinstance(value, kinds)


def check_shape(value: Any, shape: Shape, path: str) -> list[str]:
    """Every problem of ``value`` against ``shape``, each prefixed with its JSON path."""
    if not isinstance(value, dict):
        return [f"{path}: must be an object"]
    problems = [f"{path}: required field {name!r} is missing" for name in sorted(shape.required - set(value))]
    for name, item in value.items():
        rule = shape.fields.get(name)
        if rule is None:
            problems.append(f"{path}.{name}: unknown field (allowed: {', '.join(shape.fields)})")
        else:
            problems += check_value(item, rule, f"{path}.{name}")
    return problems


def check_value(value: Any, rule: Rule, path: str) -> list[str]:
    """Problems of one value against its rule."""
    if not _is(value, rule.kind):
        return [f"{path} = {value!r}: must be {_type_name(rule.kind)}"]
    problems: list[str] = []
    if rule.enum is not None and value not in rule.enum:
        problems.append(f"{path} = {value!r}: must be one of {', '.join(map(repr, rule.enum))}")
    if isinstance(value, (str, list)):
        if rule.min_length is not None and len(value) < rule.min_length:
            problems.append(f"{path}: must have at least {rule.min_length} item(s)/character(s)")
        if rule.max_length is not None and len(value) > rule.max_length:
            problems.append(f"{path}: must have at most {rule.max_length} item(s)/character(s), has {len(value)}")
    if isinstance(value, str) and rule.pattern is not None and not re.search(rule.pattern, value):
        problems.append(f"{path} = {value!r}: must match {rule.pattern}")
    if isinstance(value, list) and rule.items is not None:
        for index, item in enumerate(value):
            item_path = f"{path}[{index}]"
            problems += (
                check_shape(item, rule.items, item_path)
                if isinstance(rule.items, Shape)
                else check_value(item, rule.items, item_path)
            )
    if isinstance(value, dict) and rule.shape is not None:
        problems += check_shape(value, rule.shape, path)
    if rule.check is not None and not problems:
        message = rule.check(value)
        if message:
            problems.append(f"{path} = {value!r}: {message}")
    return problems


# --- field rules of the official schemas (ver_2021-01-01) ---------------------------------------

ENVELOPE = Rule(str, enum=(ENVELOPE_VERSION,))
NODE_NAME = Rule(str, pattern=r"^[$A-Z_a-z0-9\-]+$", min_length=1, max_length=128)
PACKAGE_NAME = Rule(str, pattern=r"^[a-z_A-Z0-9\-]+$", min_length=1, max_length=128)
VERSION = Rule(str, pattern=r"^[0-9]+\.[0-9]+$", max_length=255)
PORT_NAME = Rule(str, pattern=r"^[$A-Z_a-z0-9]+$", min_length=1, max_length=50)
PORT_TYPES = ("boolean", "int32", "float32", "string", "media")
PARAMETER_TYPES = ("boolean", "int32", "float32", "string")
EDGE_END = Rule(str, pattern=r"^[a-zA-Z0-9_\-]+\.?[a-z_A-Z0-9\-]+$")

#: JSON value kinds of each parameter type (a node's ``value``, a port's ``default``).
PARAMETER_VALUE_KINDS: dict[str, type | tuple[type, ...]] = {
    "boolean": bool,
    "int32": int,
    "float32": float,
    "string": str,
}

DECORATOR = Shape(
    {
        "title": Rule(str, min_length=1, max_length=255),
        "description": Rule(str, min_length=1, max_length=255),
        "constraintText": Rule(str, min_length=1, max_length=255),
        "constraintRegex": Rule(str, min_length=1, max_length=255),
    }
)

PORT = Shape(
    {
        "name": PORT_NAME,
        "type": Rule(str, enum=PORT_TYPES),
        "description": Rule(str, max_length=255),
        "default": Rule((bool, int, float, str)),
        "constraintRegex": Rule(str),
        "maxConnections": Rule(int, check=lambda v: "must be >= 0" if v < 0 else None),
        "reference": Rule(bool),
        "referenceSource": Rule(str),
    },
    frozenset({"name", "type"}),
)

INTERFACE = Shape(
    {
        "name": PACKAGE_NAME,
        "description": Rule(str),
        "asset": Rule(str),
        "category": Rule(str, enum=("media_source", "media_sink", "business_logic", "ml_model")),
        "inputs": Rule(list, items=PORT),
        "outputs": Rule(list, items=PORT),
        "network": Rule(dict),
    },
    frozenset({"name", "category"}),
)

IMPLEMENTATION = Shape(
    {
        "type": Rule(str, enum=("system", "container", "model")),
        "assetUri": Rule(str, min_length=1, max_length=255),
        "descriptorUri": Rule(str),
        "description": Rule(str, max_length=255),
        "requirements": Rule(list),
    },
    frozenset({"type", "assetUri"}),
)

ASSET = Shape(
    {
        "name": Rule(str, pattern=r"^[$A-Z_a-z0-9\-]+$", min_length=1, max_length=255),
        "description": Rule(str),
        "implementations": Rule(list, items=IMPLEMENTATION),
    },
    frozenset({"name"}),
)

NODE_PACKAGE = Shape(
    {
        "nodePackage": Rule(
            dict,
            shape=Shape(
                {
                    "envelopeVersion": ENVELOPE,
                    "name": PACKAGE_NAME,
                    "version": VERSION,
                    "description": Rule(str, max_length=255),
                    "assets": Rule(list, items=ASSET),
                    "interfaces": Rule(list, items=INTERFACE, min_length=1),
                },
                frozenset({"envelopeVersion", "interfaces"}),
            ),
        )
    },
    frozenset({"nodePackage"}),
)

PACKAGE_INCLUDE = Shape(
    {
        "name": Rule(str, pattern=r"^[$A-Z_a-z0-9]+::[a-zA-Z_0-9\-]+$", max_length=255),
        "version": VERSION,
        "patchVersion": Rule(str),
        "generatedPatchVersion": Rule(str),
        "uri": Rule(str),
    },
    frozenset({"name", "version"}),
)

_NODE_COMMON: dict[str, Rule] = {
    "name": NODE_NAME,
    "overridable": Rule(bool),
    "overrideMandatory": Rule(bool),
    "decorator": Rule(dict, shape=DECORATOR),
}

INTERFACE_NODE = Shape(
    {
        **_NODE_COMMON,
        "interface": Rule(str, pattern=r"^[$A-Z_a-z0-9\-]+::[A-Z_a-z0-9\-]+\.[A-Z_a-z0-9\-]+$"),
        "launch": Rule(str, enum=("onDemand", "onAppStart", "onSignal")),
    },
    frozenset({"name", "interface"}),
)


def parameter_node_shape(type_: str) -> Shape:
    """The shape of a value node of ``type_`` (``float32`` nodes hold numbers, and so on)."""
    return Shape(
        {**_NODE_COMMON, "interface": Rule(str, enum=(type_,)), "value": Rule(PARAMETER_VALUE_KINDS[type_])},
        frozenset({"name", "interface"}),
    )


EDGE = Shape({"producer": EDGE_END, "consumer": EDGE_END}, frozenset({"producer", "consumer"}))

NODE_OVERRIDE = Shape(
    {
        "envelopeVersion": ENVELOPE,
        "replace": Rule(str, pattern=r"^[$A-Z_a-z0-9\-]+$"),
        "with": Rule(
            list,
            items=Shape({"name": Rule(str, pattern=r"^[$A-Z_a-z0-9\-]+$")}, frozenset({"name"})),
        ),
    },
    frozenset({"replace", "with"}),
)

TENSOR = Shape(
    {
        "name": Rule(str),
        "type": Rule(
            str, enum=("int8", "uint8", "int16", "uint16", "int32", "uint32", "float16", "float32", "float64")
        ),
        "shape": Rule(list, items=Rule(int)),
    },
    frozenset({"name", "shape"}),
)

ASSET_DESCRIPTOR = Shape(
    {
        "mlModelDescriptor": Rule(
            dict,
            shape=Shape(
                {
                    "envelopeVersion": ENVELOPE,
                    "framework": Rule(str, enum=("TENSORFLOW", "PYTORCH", "MXNET")),
                    "frameworkVersion": Rule(str, pattern=r"^[0-9]+\.[A-Za-z0-9.]+$", min_length=3, max_length=10),
                    "inputs": Rule(list, items=TENSOR),
                    "precisionMode": Rule(str, enum=("FP32", "FP16")),
                },
                frozenset({"envelopeVersion", "framework", "inputs"}),
            ),
        ),
        "runtimeDescriptor": Rule(
            dict,
            shape=Shape(
                {
                    "envelopeVersion": ENVELOPE,
                    "entry": Rule(
                        dict,
                        shape=Shape(
                            {
                                "path": Rule(str),
                                "name": Rule(str, min_length=1),
                                "arguments": Rule(list, items=Rule(str)),
                                "environment": Rule(list),
                            }
                        ),
                    ),
                    "events": Rule(list),
                },
                frozenset({"envelopeVersion"}),
            ),
        ),
    },
)
