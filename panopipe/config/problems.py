"""Config problems in plain words: one line per broken rule, naming the field, the value and the rule.

:class:`Problem` is one broken rule; :class:`ConfigError` lists them with the file's path;
:func:`problems_from` turns pydantic's ``ValidationError`` into problems (union branches merged,
credentials redacted, patterns explained instead of shown as regular expressions).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator, Mapping
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
        shown = "<missing>" if self.value is MISSING else bounded_repr(self.value)
        return f"{self.field} = {shown}: {self.rule}"


#: The value of a required field that is absent.
MISSING = object()

#: How much of a value a problem line shows.
SHOWN_CHARACTERS = 80


def bounded_repr(value: Any, limit: int = SHOWN_CHARACTERS) -> str:
    """``repr(value)``, cut to ``limit`` characters, built piece by piece up to the cut.

    A value read from a file can be huge (a million-item list, a megabyte string): only as much of
    it is rendered as is shown, so a problem line costs the same whatever the value's size.
    """
    return _bounded(value, limit)[0]


def _bounded(value: Any, limit: int) -> tuple[str, bool]:
    """The cut repr, and whether it was cut."""
    pieces: list[str] = []
    size = 0
    for piece in _repr_pieces(value, limit + 1):
        pieces.append(piece)
        size += len(piece)
        if size > limit:
            return "".join(pieces)[: limit - 3] + "...", True
    return "".join(pieces), False


def _repr_pieces(value: Any, budget: int) -> Iterator[str]:
    """The pieces of ``repr(value)``, lazily: containers yield item by item, strings are cut first."""
    if isinstance(value, (str, bytes)):
        yield repr(value[:budget])  # longer than the budget once quoted when it was cut
    elif isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 4 * budget:
        yield f"<{value.bit_length()}-bit integer>"  # repr() of a huge int is slow, and refused past 4300 digits
    elif isinstance(value, (list, tuple, set, frozenset, Mapping)):
        if isinstance(value, Mapping):
            opening, closing = "{", "}"
        elif isinstance(value, (set, frozenset)):
            opening, closing = ("{", "}") if value else ("set(", ")")
        else:
            opening, closing = ("[", "]") if isinstance(value, list) else ("(", ",)" if len(value) == 1 else ")")
        yield opening
        for i, item in enumerate(value):
            if i:
                yield ", "
            yield from _repr_pieces(item, budget)
            if isinstance(value, Mapping):
                yield ": "
                yield from _repr_pieces(value[item], budget)
        yield closing
    else:
        yield repr(value)


def short(value: Any) -> Any:
    """``value`` when its repr fits a problem line, else that repr cut (never rendered whole)."""
    text, cut = _bounded(value, SHOWN_CHARACTERS)
    return text if cut else value


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


#: Plain-words rules for pattern-checked fields (instead of the raw regular expression), by the
#: field's path without list indices, else by its name.
_PATTERN_RULES = {
    "project": "lower-case letters and digits in words joined by single hyphens, starting with a letter",
    "environment": "lower-case letters and digits, starting with a letter",
    "account": 'a 12-digit AWS account id of ASCII digits 0-9, quoted ("123456789012")',
    "notification_email": "an e-mail address",
    "secret_name": "a Secrets Manager secret name (letters, digits and /_+=.@-)",
    "training.metric.name": "letters, digits and _ : . / - (e.g. validation:accuracy)",
    "training.metric_definitions.name": "one line of text",
    "name": "letters, digits, - and _",
    "id": "letters, digits, - and _",
    "input_name": "a tensor name: letters, digits, _ . : starting with a letter or _",
    "package_version": '<major>.<minor>, quoted ("1.0")',
    "dataset_prefix": "an S3 key prefix of one or more folders, ending in / (e.g. datasets/)",
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


def _paths(error_loc: tuple[str | int, ...]) -> tuple[tuple[str | int, ...], tuple[str | int, ...]]:
    """The error's location without validator names, and also without a union's branch names."""
    raw_loc = tuple(p for p in error_loc if not (isinstance(p, str) and p.startswith("function-")))
    loc = raw_loc
    while loc and isinstance(loc[-1], str) and loc[-1] in {"str", "int", "float", "bool", "tuple[str, ...]"}:
        loc = loc[:-1]
    return raw_loc, loc


def problems_from(
    error: ValidationError,
    model: type[BaseModel] = EnvironmentConfig,
    pattern_rules: Mapping[str, str] = _PATTERN_RULES,
) -> list[Problem]:
    """One problem per broken field: union branches merged, follow-on errors of a parent dropped.

    ``model`` is the validated file's model (for the fields an unknown one could have been) and
    ``pattern_rules`` says in words what its pattern-checked fields take.
    """
    by_location: dict[tuple[str | int, ...], Problem] = {}
    errors = [(_paths(err["loc"]), err) for err in error.errors(include_url=False)]
    # NaN or infinity: say so, whichever branch of a union (str | int | float | bool) fails first.
    not_finite = {loc for (_, loc), err in errors if err["type"] == "finite_number"}
    for (raw_loc, loc), err in errors:
        kind = err["type"]
        message = err["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
        value = err.get("input", MISSING)
        if kind == "missing":
            value, message = MISSING, "required field is missing"
        elif kind == "extra_forbidden":
            section = _location(tuple(p for p in loc[:-1] if not isinstance(p, int)))
            allowed = allowed_fields(model).get(section, [])
            message = f"unknown field; allowed here: {', '.join(allowed)}"
        elif kind == "string_pattern_mismatch":
            path = ".".join(str(p) for p in loc if not isinstance(p, int))
            rule = pattern_rules.get(path) or pattern_rules.get(str(loc[-1]), "")
            message = f"must be {rule}" if rule else message
        elif loc in not_finite:
            message = "must be a finite number (not .nan or .inf)"
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
def allowed_fields(model: type[BaseModel] = EnvironmentConfig) -> dict[str, list[str]]:
    """Field names per section path of ``model``, for 'unknown field' messages."""
    table: dict[str, list[str]] = {}

    def walk(model: type[BaseModel], path: str) -> None:
        table[path] = list(model.model_fields)
        for name, info in model.model_fields.items():
            for candidate in (info.annotation, *getattr(info.annotation, "__args__", ())):
                inner = getattr(candidate, "__args__", (candidate,))
                for typ in (candidate, *inner):
                    if isinstance(typ, type) and issubclass(typ, BaseModel):
                        walk(typ, f"{path}.{name}" if path else name)

    walk(model, "")
    table["<root>"] = table.pop("")
    return table
