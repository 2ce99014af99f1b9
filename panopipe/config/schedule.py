"""EventBridge schedule expressions, checked as EventBridge checks them (at synth time, not at deploy).

Source: the EventBridge user guide, "Cron expressions reference" (eb-cron-expressions) and
"Rate expressions" (eb-rate-expressions):

* ``rate(<value> <unit>)``: a positive whole number; the unit is ``minute``, ``hour`` or ``day``
  when the value is 1, ``minutes``, ``hours`` or ``days`` when it is more.
* ``cron(<minutes> <hours> <day-of-month> <month> <day-of-week> <year>)``: six fields, each with
  its range and the wildcards the table of :data:`CRON_FIELDS` allows; exactly one of day-of-month
  and day-of-week is ``?``; ``L``, ``W`` and ``#`` as documented (``3W``: the weekday nearest the
  3rd; ``L``: the last day of the month or week, ``6L``: the last Friday; ``3#2``: the second
  Tuesday, alone in its field).

Names of months and days are accepted in any case, as the Quartz parser EventBridge follows does.
Without this check CDK only records cfn-lint's E3027 and ``cdk synth`` still succeeds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class CronField:
    """One field of a cron expression: its name, range, names and allowed wildcards."""

    name: str
    low: int
    high: int
    wildcards: str
    names: tuple[str, ...] = ()

    @property
    def values(self) -> str:
        """The field's values as the reference table shows them."""
        text = f"{self.low}-{self.high}"
        return f"{text} or {self.names[0]}-{self.names[-1]}" if self.names else text


_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")

#: The table of the EventBridge cron reference: values and wildcards per field.
CRON_FIELDS = (
    CronField("minutes", 0, 59, ",-*/"),
    CronField("hours", 0, 23, ",-*/"),
    CronField("day-of-month", 1, 31, ",-*?/LW"),
    CronField("month", 1, 12, ",-*/", _MONTHS),
    CronField("day-of-week", 1, 7, ",-*?L#", _DAYS),
    CronField("year", 1970, 2199, ",-*/"),
)
SCHEDULE_FORMAT = "an EventBridge schedule: rate(<n> minutes|hours|days) or cron(<6 fields>)"

_RATE = re.compile(r"rate\((?P<value>[^ ()]*) (?P<unit>[^ ()]*)\)")
_NUMBER = re.compile(r"[0-9]+")
_WORD = re.compile(r"[A-Z]+")


class ScheduleError(ValueError):
    """The expression is refused; the message says why."""


def check_schedule(expression: str) -> None:
    """Raise :class:`ScheduleError` naming the first rule ``expression`` breaks."""
    if expression.startswith("rate("):
        _check_rate(expression)
    elif expression.startswith("cron(") and expression.endswith(")"):
        _check_cron(expression[len("cron(") : -1])
    else:
        raise ScheduleError(f"must be {SCHEDULE_FORMAT}")


def _check_rate(expression: str) -> None:
    match = _RATE.fullmatch(expression)
    if not match:
        raise ScheduleError("a rate is rate(<value> <unit>), one space apart, e.g. rate(5 minutes)")
    value, unit = match["value"], match["unit"]
    if not _NUMBER.fullmatch(value):
        raise ScheduleError(f"the rate's value {value!r} must be a whole number of minutes, hours or days")
    if int(value) == 0:
        raise ScheduleError("the rate's value must be at least 1")
    singular = unit.removesuffix("s")
    if singular not in ("minute", "hour", "day"):
        raise ScheduleError(f"the rate's unit {unit!r} must be minute(s), hour(s) or day(s)")
    if int(value) == 1 and unit != singular:
        raise ScheduleError(f"a rate of 1 takes the singular unit: rate(1 {singular})")
    if int(value) > 1 and unit == singular:
        raise ScheduleError(f"a rate above 1 takes the plural unit: rate({value} {singular}s)")


def _check_cron(fields_text: str) -> None:
    fields = fields_text.split(" ")
    if len(fields) != len(CRON_FIELDS) or not all(fields):
        raise ScheduleError(
            "a cron expression has 6 fields, one space apart: minutes hours day-of-month month day-of-week year "
            f"(got {len(fields_text.split())})"
        )
    for field, text in zip(CRON_FIELDS, fields, strict=True):
        problem = _field_problem(field, text.upper())
        if problem:
            raise ScheduleError(f"{field.name} field {text!r}: {problem}")
    day_of_month, day_of_week = fields[2], fields[4]
    if (day_of_month == "?") == (day_of_week == "?"):
        which = "both are ?" if day_of_month == "?" else "EventBridge cannot take both"
        raise ScheduleError(
            f"exactly one of day-of-month and day-of-week must be ? ({which}; "
            "e.g. cron(0 3 ? * MON *) or cron(0 3 1 * ? *))"
        )


def _field_problem(field: CronField, text: str) -> str | None:
    """Why ``text`` (upper case) is not a valid value of ``field``, or None."""
    if field.names:  # JAN -> 1, SUN -> 1: the letters of JUL and WED are not the wildcards L and W
        text = _WORD.sub(lambda m: str(field.low + field.names.index(m[0])) if m[0] in field.names else m[0], text)
    used = sorted({c for c in text if c in ",-*?/LW#" and c not in field.wildcards})
    if used:
        return f"{' '.join(used)} is not allowed here (this field takes {field.values} and {' '.join(field.wildcards)})"
    if text == "?":
        return None
    if "?" in text:
        return "? stands alone in its field"
    items = text.split(",")
    if len(items) > 1 and any(c in text for c in "LW#"):
        return "L, W and # cannot be combined with other items in a list (EventBridge refuses e.g. 3#1,6#3)"
    for item in items:
        if not item:
            return "an empty item between commas"
        problem = _special_problem(field, item) if any(c in item for c in "LW#") else _item_problem(field, item)
        if problem:
            return problem
    return None


def _special_problem(field: CronField, item: str) -> str | None:
    """``L`` (day-of-month, day-of-week), ``<day>L`` (day-of-week), ``<day>W``, ``<day>#<n>``."""
    if item == "L":
        return None
    if field.name == "day-of-month" and item.endswith("W") and item[:-1]:
        return _value_problem(field, item[:-1])
    if field.name == "day-of-week" and item.endswith("L") and item[:-1]:
        return _value_problem(field, item[:-1])
    if field.name == "day-of-week" and item.count("#") == 1:
        day, nth = item.split("#")
        if not _NUMBER.fullmatch(nth) or not 1 <= int(nth) <= 5:
            return f"in {item}, the week of the month after # must be 1-5"
        return _value_problem(field, day)
    return f"{item!r} is not a valid use of L, W or # (e.g. L, 15W in day-of-month; L, 6L, 3#2 in day-of-week)"


def _item_problem(field: CronField, item: str) -> str | None:
    """``*``, a value or a range ``a-b``, optionally with an increment ``/n``."""
    base, slash, step = item.partition("/")
    if slash:
        if not _NUMBER.fullmatch(step) or int(step) == 0:
            return f"the increment after / must be a whole number of at least 1, not {step!r}"
        limit = field.high if field.name != "year" else field.high - field.low
        if int(step) > limit:
            return f"the increment {step} is larger than the field's range ({field.values})"
    if base == "*":
        return None
    if base.count("-") == 1:
        start, end = base.split("-")
        return _value_problem(field, start) or _value_problem(field, end)
    return _value_problem(field, base)


def _value_problem(field: CronField, value: str) -> str | None:
    if value in field.names:
        return None
    if not _NUMBER.fullmatch(value):
        names = f" or a name {field.names[0]}-{field.names[-1]}" if field.names else ""
        return f"{value!r} is not a number{names}"
    if not field.low <= int(value) <= field.high:
        return f"{int(value)} is out of range ({field.values})"
    return None
