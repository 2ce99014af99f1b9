"""runs.schedule: EventBridge's rate and cron rules, checked when the config loads (not at deploy).

The expressions that must pass are the examples of the EventBridge user guide (cron expressions
reference) plus one per wildcard; each refused one breaks one documented rule.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from panopipe.config import ConfigError, parse_config
from tests.conftest import ROOT
from tests.test_config import DEV

ACCEPTED = [
    "rate(1 minute)",
    "rate(5 minutes)",
    "rate(1 hour)",
    "rate(12 hours)",
    "rate(1 day)",
    "rate(7 days)",
    "cron(0 10 * * ? *)",
    "cron(15 12 * * ? *)",
    "cron(0 18 ? * MON-FRI *)",
    "cron(0 8 1 * ? *)",
    "cron(0/15 * * * ? *)",
    "cron(0/10 * ? * MON-FRI *)",
    "cron(0/5 8-17 ? * MON-FRI *)",
    "cron(0 9 ? * 2#1 *)",
    "cron(*/5 * * * ? *)",
    "cron(0 3 L * ? *)",
    "cron(0 3 15W * ? *)",
    "cron(0 3 ? * L *)",
    "cron(0 3 ? * 6L *)",
    "cron(0 12 * JAN,FEB ? 2026-2030)",
    "cron(0 3 ? JUL WED *)",  # the L of JUL and the W of WED are letters of names, not wildcards
    "cron(0 18 ? * mon-fri *)",
    "cron(0 3 ? * SUN,SAT 1970/5)",
    "cron(59 23 31 12 ? 2199)",
]

REFUSED = {
    "rate(1 hours)": "a rate of 1 takes the singular unit: rate(1 hour)",
    "rate(1 minutes)": "rate(1 minute)",
    "rate(5 hour)": "a rate above 1 takes the plural unit: rate(5 hours)",
    "rate(0 minutes)": "the rate's value must be at least 1",
    "rate(1.5 hours)": "must be a whole number",
    "rate(-5 minutes)": "must be a whole number",
    "rate(5 weeks)": "the rate's unit 'weeks' must be minute(s), hour(s) or day(s)",
    "rate(5  minutes)": "one space apart",
    "rate(5minutes)": "rate(<value> <unit>)",
    "cron(0 3 * * MON *)": "exactly one of day-of-month and day-of-week must be ? (EventBridge cannot take both",
    "cron(0 3 1 * 2 *)": "exactly one of day-of-month and day-of-week must be ?",
    "cron(0 3 ? * ? *)": "exactly one of day-of-month and day-of-week must be ? (both are ?",
    "cron(0 3 * * ?)": "6 fields, one space apart: minutes hours day-of-month month day-of-week year (got 5)",
    "cron(0 0 3 * * ? *)": "(got 7)",
    "cron(0  3 * * ? *)": "6 fields, one space apart",
    "cron(60 3 ? * MON *)": "minutes field '60': 60 is out of range (0-59)",
    "cron(0 24 ? * MON *)": "hours field '24': 24 is out of range (0-23)",
    "cron(0 3 0 * ? *)": "day-of-month field '0': 0 is out of range (1-31)",
    "cron(0 3 32 * ? *)": "day-of-month field '32': 32 is out of range (1-31)",
    "cron(0 3 1 13 ? *)": "month field '13': 13 is out of range (1-12 or JAN-DEC)",
    "cron(0 3 1 JANUARY ? *)": "month field 'JANUARY': 'JANUARY' is not a number or a name JAN-DEC",
    "cron(0 3 ? * 0 *)": "day-of-week field '0': 0 is out of range (1-7 or SUN-SAT)",
    "cron(0 3 ? * 8 *)": "day-of-week field '8': 8 is out of range (1-7 or SUN-SAT)",
    "cron(0 3 ? * MON-FRY *)": "'FRY' is not a number or a name SUN-SAT",
    "cron(0 3 1 * ? 1969)": "year field '1969': 1969 is out of range (1970-2199)",
    "cron(0 3 1 * ? 2200)": "year field '2200': 2200 is out of range (1970-2199)",
    "cron(0 3 ? * 1/2 *)": "day-of-week field '1/2': / is not allowed here",
    "cron(0 3W 1 * ? *)": "hours field '3W': W is not allowed here (this field takes 0-23 and , - * /)",
    "cron(L 3 1 * ? *)": "minutes field 'L': L is not allowed here",
    "cron(0 3 1#2 * ? *)": "day-of-month field '1#2': # is not allowed here",
    "cron(? 3 1 * ? *)": "minutes field '?': ? is not allowed here",
    "cron(0 3 1 * ? ?)": "year field '?': ? is not allowed here",
    "cron(0 3 ?,1 * ? *)": "? stands alone in its field",
    "cron(0 3 ? * 3#1,6#3 *)": "L, W and # cannot be combined with other items in a list",
    "cron(0 3 L,15 * ? *)": "L, W and # cannot be combined",
    "cron(0 3 ? * 3#6 *)": "in 3#6, the week of the month after # must be 1-5",
    "cron(0 3 ? * 9#2 *)": "9 is out of range (1-7 or SUN-SAT)",
    "cron(0 3 32W * ? *)": "32 is out of range (1-31)",
    "cron(0 3 ? * 8L *)": "8 is out of range",
    "cron(0 3 L5 * ? *)": "not a valid use of L, W or #",
    "cron(0/0 3 1 * ? *)": "minutes field '0/0': the increment after / must be a whole number of at least 1",
    "cron(0/60 3 1 * ? *)": "the increment 60 is larger than the field's range (0-59)",
    "cron(1,,2 3 1 * ? *)": "an empty item between commas",
    "cron(1- 3 1 * ? *)": "'' is not a number",
    "cron(0 3 1 * ? *": "must be an EventBridge schedule",
    "every monday": "must be an EventBridge schedule: rate(<n> minutes|hours|days) or cron(<6 fields>)",
}


def _with_schedule(expression: str) -> dict[str, Any]:
    data: dict[str, Any] = copy.deepcopy(DEV)
    data.setdefault("runs", {})["schedule"] = expression
    return data


@pytest.mark.parametrize("expression", ACCEPTED)
def test_schedules_eventbridge_accepts_are_accepted(expression: str) -> None:
    assert parse_config(_with_schedule(expression), base_dir=ROOT).runs.schedule == expression


@pytest.mark.parametrize("expression", sorted(REFUSED))
def test_schedules_eventbridge_refuses_are_refused_at_load(expression: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(_with_schedule(expression), "config/bad.yaml", base_dir=ROOT)
    (problem,) = (str(p) for p in caught.value.problems)
    assert problem.startswith(f"runs.schedule = {expression!r}: "), problem
    assert REFUSED[expression] in problem, problem
