"""Config problems in plain words: one line per broken rule, naming the field, the value and the rule.

:class:`Problem` is one broken rule; :class:`ConfigError` lists them with the file's path;
:func:`problems_from` turns pydantic's ``ValidationError`` into problems (union branches merged,
credentials redacted, patterns explained instead of shown as regular expressions).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from panopipe.config.schema import CREDENTIAL_FIELDS, EnvironmentConfig


@dataclass(frozen=True)
class Problem:
    """One broken rule: where, what value, which rule."""

    field: str
    value: Any
    rule: str

    def __str__(self) -> str:
        shown = "<missing>" if self.value is MISSING else repr(short(self.value))
        return f"{self.field} = {shown}: {self.rule}"


#: The value of a required field that is absent.
MISSING = object()


def short(value: Any) -> Any:
    """``value``, or its repr cut to 80 characters when longer."""
    text = repr(value)
    return value if len(text) <= 80 else text[:77] + "..."


class ConfigError(Exception):
    """The configuration file is invalid; ``str()`` lists every problem, one per line."""

    def __init__(self, source: str, problems: Iterable[Problem]) -> None:
        self.source = source
        self.problems = tuple(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        noun = "problem" if len(self.problems) == 1 else "problems"
        super().__init__(f"invalid configuration {source} ({len(self.problems)} {noun}):\n{lines}")


def _location(loc: tuple[str | int, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "<root>"


#: Plain-words rules for pattern-checked fields (instead of the raw regular expression).
_PATTERN_RULES = {
    "project": "lower-case letters and digits in words joined by single hyphens, starting with a letter",
    "environment": "lower-case letters and digits, starting with a letter",
    "account": 'a 12-digit AWS account id, quoted ("123456789012")',
    "notification_email": "an e-mail address",
    "secret_name": "a Secrets Manager secret name (letters, digits and /_+=.@-)",
    "name": "letters, digits, - and _",
    "id": "letters, digits, - and _",
    "input_name": "a tensor name: letters, digits, _ . : starting with a letter or _",
    "package_version": '<major>.<minor>, quoted ("1.0")',
    "dataset_prefix": "an S3 key prefix of one or more folders, ending in / (e.g. datasets/)",
    "schedule": "an EventBridge schedule: rate(<n> minutes|hours|days) or cron(<6 fields>)",
}
_REDACTED = "<redacted>"
_URL_CREDENTIALS = re.compile(r"(\w+://)[^/@\s]+@")


def _redact(loc: tuple[str | int, ...], value: Any) -> Any:
    """Hide credentials that a user put where they do not belong, so no log ever shows them."""
    if isinstance(value, dict):
        return {k: (_REDACTED if k in CREDENTIAL_FIELDS else _redact((*loc, k), v)) for k, v in value.items()}
    if isinstance(value, str):
        if loc and loc[0] == "cameras" and loc[-1] not in ("name", "secret_name"):
            return _REDACTED
        return _URL_CREDENTIALS.sub(r"\1<redacted>@", value)
    return value


def problems_from(error: ValidationError) -> list[Problem]:
    """One problem per broken field: union branches merged, follow-on errors of a parent dropped."""
    by_location: dict[tuple[str | int, ...], Problem] = {}
    for err in error.errors(include_url=False):
        raw_loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        kind = err["type"]
        # A union's branch names (str, int, ...) follow the real path: cut them off.
        loc = raw_loc
        while loc and isinstance(loc[-1], str) and loc[-1] in {"str", "int", "float", "bool", "tuple[str, ...]"}:
            loc = loc[:-1]
        message = err["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        value = err.get("input", MISSING)
        if kind == "missing":
            value, message = MISSING, "required field is missing"
        elif kind == "extra_forbidden":
            section = _location(tuple(p for p in loc[:-1] if not isinstance(p, int)))
            allowed = allowed_fields().get(section, [])
            message = f"unknown field; allowed here: {', '.join(allowed)}"
        elif kind == "string_pattern_mismatch":
            rule = _PATTERN_RULES.get(str(loc[-1]), "")
            message = f"must be {rule}" if rule else message
        elif kind == "string_type" and isinstance(value, (int, float)):
            message = "must be text: quote the value in YAML"
        elif loc != raw_loc:
            message = "must be a string, a number or true/false"
        if loc in by_location:
            continue  # the first error of a location says it; union branches repeat it
        by_location[loc] = Problem(_location(loc), _redact(loc, value), message)
    # "too short" on a list whose items have their own errors is noise, not a second problem.
    return [
        p
        for loc, p in by_location.items()
        if not (
            p.rule.startswith("Tuple should have at least")
            and any(o[: len(loc)] == loc and o != loc for o in by_location)
        )
    ]


@functools.cache
def allowed_fields() -> dict[str, list[str]]:
    """Field names per section path, for 'unknown field' messages."""
    table: dict[str, list[str]] = {}

    def walk(model: type[BaseModel], path: str) -> None:
        table[path] = list(model.model_fields)
        for name, info in model.model_fields.items():
            for candidate in (info.annotation, *getattr(info.annotation, "__args__", ())):
                inner = getattr(candidate, "__args__", (candidate,))
                for typ in (candidate, *inner):
                    if isinstance(typ, type) and issubclass(typ, BaseModel):
                        walk(typ, f"{path}.{name}" if path else name)

    walk(EnvironmentConfig, "")
    table["<root>"] = table.pop("")
    return table
