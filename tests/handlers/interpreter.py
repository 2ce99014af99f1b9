"""An in-process interpreter of the Amazon States Language subset that our state machine uses.

Pipeline run tests walk the synthesized definition with it and call the real handler of each Task
state in-process, with exactly that function's environment. Supported, and nothing more (other
fields are refused, so a definition that starts using one cannot pass unnoticed):

- Pass: ``Parameters`` (``"key.$"``: ``$``/``$.a.b`` of the input, ``$$.Execution.Name|StartTime``),
  ``Result``, ``ResultPath``.
- Task: ``Resource`` ``<LogicalId>`` → the function's ``Handler``; ``Retry`` (``ErrorEquals`` by the
  error's class name, which is Lambda's errorType, or ``States.ALL``; ``MaxAttempts``; the interval is
  not slept) and ``Catch`` (``ResultPath`` gets ``{"Error", "Cause"}``, Cause JSON as Lambda writes it);
  ``TimeoutSeconds`` is accepted, not enforced (a call in-process never hangs on the network).
- Choice: ``StringEquals``, ``IsPresent``, ``BooleanEquals`` on a ``Variable``, ``And`` of them,
  ``Default``. Wait: ``Seconds``, not slept but added
  to :attr:`Interpreter.waited`, a virtual clock (:meth:`Interpreter.now`). Succeed. Fail with
  ``Error``/``Cause`` or ``ErrorPath``/``CausePath``. The run's ``TimeoutSeconds`` (virtual time).

Payloads cross as JSON (at most 256 KB), as between Step Functions and Lambda. An AssertionError
(a botocore Stubber's included) is a failing test, not a failing task: it propagates.
"""

from __future__ import annotations

import importlib
import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lambda_handlers.settings import install
from panopipe.environ import environment

State = dict[str, Any]
PAYLOAD_LIMIT = 256 * 1024
_FIELDS = {
    "Pass": {"Parameters", "Result", "ResultPath", "Next"},
    "Task": {"Resource", "Retry", "Catch", "Next", "TimeoutSeconds"},
    "Choice": {"Choices", "Default"},
    "Wait": {"Seconds", "Next"},
    "Succeed": set(),
    "Fail": {"Error", "Cause", "ErrorPath", "CausePath"},
}


@dataclass(frozen=True)
class Function:
    """A Lambda function of the template: ``module.attribute`` of its handler, its variables."""

    handler: str
    environment: dict[str, str]


@dataclass
class Execution:
    """What a run did: its end, every state entered in order, calls, retries and waits per state."""

    status: str = "RUNNING"  # SUCCEEDED | FAILED | TIMED_OUT
    output: State | None = None
    error: str | None = None
    cause: str | None = None
    path: list[str] = field(default_factory=list)
    invocations: Counter[str] = field(default_factory=Counter)  # handler calls, retries included
    retries: Counter[str] = field(default_factory=Counter)
    waits: Counter[str] = field(default_factory=Counter)


def get(data: Any, path: str) -> Any:
    """The value at ``$`` or ``$.a.b``."""
    assert path == "$" or path.startswith("$."), f"unsupported path {path}"
    for key in path[2:].split(".") if path != "$" else []:
        data = data[key]
    return data


def matches(data: Any, rule: State, where: str) -> bool:
    """One Choice rule: ``StringEquals``, or ``And`` of ``IsPresent`` / ``BooleanEquals`` (short-circuit)."""
    if "And" in rule:
        assert set(rule) - {"Next"} == {"And"}, where
        return all(matches(data, inner, where) for inner in rule["And"])
    tests = set(rule) - {"Variable", "Next"}
    assert len(tests) == 1 and tests <= {"StringEquals", "IsPresent", "BooleanEquals"}, where
    (test,) = tests
    if test == "IsPresent":
        try:
            get(data, rule["Variable"])
        except (KeyError, TypeError):
            return not rule["IsPresent"]
        return bool(rule["IsPresent"])
    value = get(data, rule["Variable"])  # a missing variable fails the run in AWS (States.Runtime)
    return bool(value == rule[test]) if test == "StringEquals" else value is rule[test]


def put(data: State, path: str, value: Any) -> Any:
    """``data`` with ``value`` at ``path`` (``$`` replaces it), as ResultPath does."""
    if path == "$":
        return value
    *parents, last = path[2:].split(".")
    result = json.loads(json.dumps(data))
    target = result
    for key in parents:
        target = target.setdefault(key, {})
    target[last] = value
    return result


def parameters(template: State, data: State, context: State) -> State:
    """A Pass state's ``Parameters`` applied to its input."""
    out: State = {}
    for key, value in template.items():
        if key.endswith(".$"):
            out[key[:-2]] = get(context, value[1:]) if value.startswith("$$") else get(data, value)
        else:
            out[key] = parameters(value, data, context) if isinstance(value, dict) else value
    return out


class Interpreter:
    """Runs executions of ``definition``; ``functions``: the template's functions by logical id."""

    def __init__(
        self,
        definition: State,
        functions: dict[str, Function],
        *,
        cleared: tuple[str, ...] = (),
        before_task: Callable[[str, State], None] | None = None,
    ) -> None:
        self.definition, self.functions, self.cleared = definition, functions, cleared
        self.before_task = before_task  # called before every handler call: the world moves on
        self.waited = 0.0

    def now(self) -> float:
        """Real time plus every Wait so far: what the handlers' clock reads in these tests."""
        return time.time() + self.waited

    def invoke(self, name: str, data: State) -> State:
        """One call of Task ``name``'s handler, as Lambda makes it: own environment, JSON both ways."""
        function = self.functions[self.definition["States"][name]["Resource"].strip("<>")]
        if self.before_task:
            self.before_task(name, data)
        module, _, attribute = function.handler.rpartition(".")
        handler = getattr(importlib.import_module(module), attribute)
        with environment(function.environment, cleared=self.cleared):
            install(None)  # each function parses its own STEP_SETTINGS
            text = json.dumps(handler(json.loads(json.dumps(data)), None))
        assert len(text.encode()) <= PAYLOAD_LIMIT, f"{name} returned {len(text.encode())} bytes"
        return json.loads(text)  # type: ignore[no-any-return]

    def _task(self, name: str, state: State, data: State, run: Execution) -> tuple[str | None, Any]:
        attempts: Counter[int] = Counter()
        while True:
            run.invocations[name] += 1
            try:
                return state["Next"], self.invoke(name, data)
            except AssertionError:
                raise
            except Exception as error:
                kind = type(error).__name__
                retry = _matching(state.get("Retry", []), kind)
                if retry is not None and attempts[retry] < state["Retry"][retry].get("MaxAttempts", 3):
                    attempts[retry] += 1
                    run.retries[name] += 1
                    continue
                cause = json.dumps({"errorMessage": str(error), "errorType": kind})
                catch = _matching(state.get("Catch", []), kind)
                if catch is None:
                    run.status, run.error, run.cause = "FAILED", kind, cause
                    return None, data
                caught = state["Catch"][catch]
                return caught["Next"], put(data, caught.get("ResultPath", "$"), {"Error": kind, "Cause": cause})

    def run(self, given: State, name: str, started: str = "2026-06-01T10:00:00.000Z") -> Execution:
        """Run one execution to its end."""
        context, run = {"Execution": {"Name": name, "StartTime": started}}, Execution()
        states, current, data = self.definition["States"], self.definition["StartAt"], given
        begun = self.waited
        while current is not None:
            state, kind = states[current], states[current]["Type"]
            assert not set(state) - _FIELDS[kind] - {"Type", "Comment"}, f"{current}: unsupported {sorted(state)}"
            run.path.append(current)
            following: str | None = state.get("Next")
            if kind == "Pass":
                effective = parameters(state["Parameters"], data, context) if "Parameters" in state else data
                data = put(data, state.get("ResultPath", "$"), state.get("Result", effective))
            elif kind == "Task":
                following, data = self._task(current, state, data, run)
            elif kind == "Choice":
                matched = [c["Next"] for c in state["Choices"] if matches(data, c, current)]
                following = (matched or [state["Default"]])[0]
            elif kind == "Wait":
                self.waited += state["Seconds"]
                run.waits[current] += 1
                if self.waited - begun > self.definition.get("TimeoutSeconds", float("inf")):
                    run.status, run.error, following = "TIMED_OUT", "States.Timeout", None
            elif kind == "Succeed":
                run.status, run.output = "SUCCEEDED", data
            else:
                run.status, run.output = "FAILED", data
                run.error = state.get("Error") or get(data, state["ErrorPath"])
                run.cause = state.get("Cause") or get(data, state["CausePath"])
            current = following
        return run


def _matching(rules: list[State], error: str) -> int | None:
    """Index of the first Retry/Catch rule whose ErrorEquals names ``error`` (or States.ALL)."""
    return next((i for i, rule in enumerate(rules) if {error, "States.ALL"} & set(rule["ErrorEquals"])), None)
