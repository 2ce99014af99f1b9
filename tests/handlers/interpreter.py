"""An in-process interpreter of the Amazon States Language subset that our state machine uses.

Pipeline run tests walk the synthesized definition with it and call the real handler of each Task
state in-process, with exactly that function's environment. Supported, and nothing more (other
fields are refused, so a definition that starts using one cannot pass unnoticed):

- Pass: ``Parameters`` (``"key.$"``: ``$``/``$.a.b`` of the input, ``$$.Execution.Name|StartTime``),
  ``Result``, ``ResultPath`` (``null`` keeps the input).
- Task: ``Resource`` ``<LogicalId>`` → the function's ``Handler``; ``Retry`` (``ErrorEquals`` by the
  error's class name, which is Lambda's errorType, or ``States.ALL``; ``MaxAttempts``; the interval is
  not slept) and ``Catch`` (``ResultPath`` gets ``{"Error", "Cause"}``, Cause JSON as Lambda writes it);
  ``TimeoutSeconds`` is accepted, not enforced (a call in-process never hangs on the network).
- Map, inline (``ItemProcessor`` with ``ProcessorConfig.Mode`` ``INLINE``; its states see only each
  other): ``ItemsPath`` (a JSON array, else the run fails with ``States.Runtime``), ``ItemSelector`` (as
  ``Parameters``, plus ``$$.Map.Item.Value|Index``; without it, the item), ``ResultSelector`` (as
  ``Parameters``, on the list of results), ``ResultPath``; ``Retry``/``Catch`` as for Task, on the error
  of the first iteration that fails (a retry runs all of them again). ``MaxConcurrency`` is accepted:
  iterations run one by one in item order, one legal interleaving, so their waits add up.
- Choice: ``StringEquals``, ``IsPresent``, ``BooleanEquals`` on a ``Variable``, ``And`` of them,
  ``Default``. Wait: ``Seconds``, ``SecondsPath`` or ``TimestampPath`` (RFC 3339 with a zone, whole
  seconds as Step Functions reads it; a past one does not wait), not slept but added to
  :attr:`Interpreter.waited`, a virtual clock (:meth:`Interpreter.now`). Succeed. Fail with
  ``Error``/``Cause`` or ``ErrorPath``/``CausePath``. ``Next`` or ``End``. The run's ``TimeoutSeconds``
  (virtual time).

:class:`Execution` records states by their names, nested ones included where they run: ``path`` lists
a Map, then its iterations' states in order, then what follows it. States.Runtime and States.Timeout
end the run whatever Catch is around them, as in AWS. Payloads cross as JSON (at most 256 KB), as
between Step Functions and Lambda. An AssertionError (a botocore Stubber's included) is a failing test,
not a failing task: it propagates.
"""

from __future__ import annotations

import importlib
import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

from lambda_handlers.settings import install
from panopipe.environ import environment

State = dict[str, Any]
PAYLOAD_LIMIT = 256 * 1024
_FIELDS = {
    "Pass": {"Parameters", "Result", "ResultPath", "Next", "End"},
    "Task": {"Resource", "Retry", "Catch", "Next", "End", "TimeoutSeconds"},
    "Map": {"ItemsPath", "ItemSelector", "ItemProcessor", "MaxConcurrency", "ResultSelector", "ResultPath"}
    | {"Retry", "Catch", "Next", "End"},
    "Choice": {"Choices", "Default"},
    "Wait": {"Seconds", "SecondsPath", "TimestampPath", "Next", "End"},
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
    output: Any = None  # JSON; on FAILED, the input of the top-level Fail state that failed the run, if one did
    error: str | None = None
    cause: str | None = None
    path: list[str] = field(default_factory=list)  # Map iterations' states included
    invocations: Counter[str] = field(default_factory=Counter)  # handler calls, retries included
    retries: Counter[str] = field(default_factory=Counter)
    waits: Counter[str] = field(default_factory=Counter)


class _Failed(Exception):
    """A state's error, for the Retry and Catch of the Task or Map around it; else the run fails."""

    def __init__(self, error: str | None, cause: str | None, output: Any = None) -> None:
        super().__init__(error)
        self.error, self.cause, self.output = error, cause, output


class _Ended(Exception):
    """An end no Retry or Catch takes: the run times out, or fails with ``States.Runtime``."""

    def __init__(self, status: str, error: str, cause: str | None = None) -> None:
        super().__init__(error)
        self.status, self.error, self.cause = status, error, cause


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


def put(data: Any, path: str | None, value: Any) -> Any:
    """``data`` with ``value`` at ``path`` (``$`` replaces it, ``None`` discards it), as ResultPath does."""
    if path is None:
        return data
    if path == "$":
        return value
    *parents, last = path[2:].split(".")
    result = json.loads(json.dumps(data))
    target = result
    for key in parents:
        target = target.setdefault(key, {})
    target[last] = value
    return result


def parameters(template: State, data: Any, context: State) -> State:
    """A Pass state's ``Parameters`` (a Map's ``ItemSelector``, ``ResultSelector``) applied to ``data``."""
    out: State = {}
    for key, value in template.items():
        if key.endswith(".$"):
            out[key[:-2]] = get(context, value[1:]) if value.startswith("$$") else get(data, value)
        else:
            out[key] = parameters(value, data, context) if isinstance(value, dict) else value
    return out


def timestamp(value: Any) -> float:
    """Epoch seconds of an RFC 3339 timestamp with a zone, in whole seconds: Step Functions drops the rest."""
    try:
        moment = datetime.fromisoformat(value) if isinstance(value, str) and "T" in value else None
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise _Ended("FAILED", "States.Runtime", f"not a timestamp: {value!r}")
    return float(int(moment.timestamp()))


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

    def invoke(self, name: str, data: State, state: State | None = None) -> State:
        """One call of Task ``name``'s handler, as Lambda makes it: own environment, JSON both ways.

        ``state``: the Task; by default, the one state named ``name``, in a Map's processor or not.
        """
        if state is None:
            (state,) = [found for named, found in _states(self.definition) if named == name]
        function = self.functions[state["Resource"].strip("<>")]
        if self.before_task:
            self.before_task(name, data)
        module, _, attribute = function.handler.rpartition(".")
        handler = getattr(importlib.import_module(module), attribute)
        with environment(function.environment, cleared=self.cleared):
            install(None)  # each function parses its own STEP_SETTINGS
            text = json.dumps(handler(json.loads(json.dumps(data)), None))
        assert len(text.encode()) <= PAYLOAD_LIMIT, f"{name} returned {len(text.encode())} bytes"
        return json.loads(text)  # type: ignore[no-any-return]

    def run(self, given: Any, name: str, started: str = "2026-06-01T10:00:00.000Z") -> Execution:
        """Run one execution to its end."""
        context, run = {"Execution": {"Name": name, "StartTime": started}}, Execution()
        deadline = self.waited + self.definition.get("TimeoutSeconds", float("inf"))
        try:
            run.output = self._walk(self.definition, given, context, run, deadline)
            run.status = "SUCCEEDED"
        except _Failed as failed:
            run.status, run.output, run.error, run.cause = "FAILED", failed.output, failed.error, failed.cause
        except _Ended as ended:
            run.status, run.error, run.cause = ended.status, ended.error, ended.cause
        return run

    def _walk(self, graph: State, data: Any, context: State, run: Execution, deadline: float) -> Any:
        """Run ``graph`` (the definition, or a Map's ItemProcessor) from StartAt to its end: its output."""
        states, current = graph["States"], graph["StartAt"]
        while True:
            state, kind = states[current], states[current]["Type"]
            assert not set(state) - _FIELDS[kind] - {"Type", "Comment"}, f"{current}: unsupported {sorted(state)}"
            run.path.append(current)
            following: str | None = state.get("Next")
            if kind == "Pass":
                effective = parameters(state["Parameters"], data, context) if "Parameters" in state else data
                data = put(data, state.get("ResultPath", "$"), state.get("Result", effective))
            elif kind == "Task":
                following, data = self._guarded(
                    current, state, data, run, partial(self._task, current, state, data, run)
                )
            elif kind == "Map":
                attempt = self._map(current, state, data, context, run, deadline)
                following, data = self._guarded(current, state, data, run, attempt)
            elif kind == "Choice":
                matched = [c["Next"] for c in state["Choices"] if matches(data, c, current)]
                following = (matched or [state["Default"]])[0]
            elif kind == "Wait":
                self._wait(current, state, data, run, deadline)
            elif kind == "Succeed":
                return data
            else:
                error = state.get("Error") or (get(data, state["ErrorPath"]) if "ErrorPath" in state else None)
                cause = state.get("Cause") or (get(data, state["CausePath"]) if "CausePath" in state else None)
                raise _Failed(error, cause, data)
            if following is None:
                assert state.get("End") is True, f"{current}: neither Next nor End"
                return data
            current = following

    def _task(self, name: str, state: State, data: State, run: Execution) -> State:
        """The handler's output, or its exception as the error Lambda reports (class name, JSON cause)."""
        run.invocations[name] += 1
        try:
            return self.invoke(name, data, state)
        except AssertionError:
            raise
        except Exception as error:
            kind = type(error).__name__
            raise _Failed(kind, json.dumps({"errorMessage": str(error), "errorType": kind})) from error

    def _map(
        self, name: str, state: State, data: Any, context: State, run: Execution, deadline: float
    ) -> Callable[[], Any]:
        """The Map's attempt: every item through the processor in order, results placed in ``data``."""
        processor = state["ItemProcessor"]
        assert not set(processor) - {"ProcessorConfig", "StartAt", "States", "Comment"}, f"{name}: {sorted(processor)}"
        assert processor.get("ProcessorConfig", {"Mode": "INLINE"}) == {"Mode": "INLINE"}, f"{name}: only INLINE"
        items = get(data, state.get("ItemsPath", "$"))
        if not isinstance(items, list):
            raise _Ended("FAILED", "States.Runtime", f"{name}: ItemsPath gives {type(items).__name__}, not an array")

        def attempt() -> Any:
            results = []
            for index, item in enumerate(items):
                scope = {**context, "Map": {"Item": {"Index": index, "Value": item}}}
                given = parameters(state["ItemSelector"], data, scope) if "ItemSelector" in state else item
                results.append(self._walk(processor, json.loads(json.dumps(given)), context, run, deadline))
            selected = parameters(state["ResultSelector"], results, context) if "ResultSelector" in state else results
            return put(data, state.get("ResultPath", "$"), selected)

        return attempt

    def _guarded(
        self, name: str, state: State, data: Any, run: Execution, attempt: Callable[[], Any]
    ) -> tuple[str | None, Any]:
        """Next state and output of a Task or Map: ``attempt`` under its Retry, then its Catch."""
        attempts: Counter[int] = Counter()
        while True:
            try:
                return state.get("Next"), attempt()
            except _Failed as failed:
                retry = _matching(state.get("Retry", []), failed.error)
                if retry is not None and attempts[retry] < state["Retry"][retry].get("MaxAttempts", 3):
                    attempts[retry] += 1
                    run.retries[name] += 1
                    continue
                catch = _matching(state.get("Catch", []), failed.error)
                if catch is None:  # a Fail's input inside a Map is not the run's output
                    raise _Failed(failed.error, failed.cause) from failed
                caught = state["Catch"][catch]
                error = {key: value for key, value in (("Error", failed.error), ("Cause", failed.cause)) if value}
                return caught["Next"], put(data, caught.get("ResultPath", "$"), error)

    def _wait(self, name: str, state: State, data: Any, run: Execution, deadline: float) -> None:
        """Advance the virtual clock by ``Seconds``/``SecondsPath``, or up to ``TimestampPath``."""
        (how,) = {"Seconds", "SecondsPath", "TimestampPath"} & set(state)
        if how == "TimestampPath":
            seconds: Any = max(0.0, timestamp(get(data, state[how])) - self.now())
        else:
            seconds = state[how] if how == "Seconds" else get(data, state[how])
            if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 0:
                raise _Ended("FAILED", "States.Runtime", f"{name}: wait of {seconds!r} seconds")
        self.waited += seconds
        run.waits[name] += 1
        if self.waited > deadline:
            raise _Ended("TIMED_OUT", "States.Timeout")


def _states(graph: State) -> Iterator[tuple[str, State]]:
    """Every state of ``graph`` with its name, those of its Maps' processors included."""
    for name, state in graph["States"].items():
        yield name, state
        if state["Type"] == "Map":
            yield from _states(state["ItemProcessor"])


def _matching(rules: list[State], error: str | None) -> int | None:
    """Index of the first Retry/Catch rule whose ErrorEquals names ``error`` (or States.ALL)."""
    return next((i for i, rule in enumerate(rules) if {error, "States.ALL"} & set(rule["ErrorEquals"])), None)
