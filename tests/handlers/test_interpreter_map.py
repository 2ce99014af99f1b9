"""The interpreter's inline Map and timestamp Waits, on small hand-written definitions.

The pipeline run tests trust :mod:`tests.handlers.interpreter` to run a Map and a Wait the way Step
Functions does; these pin that down without any handler but a tiny one defined here. The virtual
clock's real-time part is fixed (``clock``), so waits are exact.
"""

from __future__ import annotations

import types
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.handlers import interpreter as asl
from tests.handlers.interpreter import Execution, Function, Interpreter

State = dict[str, Any]
NOW = datetime(2026, 12, 3, 15, 0, tzinfo=UTC).timestamp()  # what time.time() reads in these tests
CALLS: list[State] = []  # every call of double(), in order


class Flaky(Exception):
    """The error double() raises on its second call."""


def double(event: State, _context: object) -> State:
    """A Task handler: doubles ``n``; its second call ever fails."""
    CALLS.append(event)
    if len(CALLS) == 2:
        raise Flaky("second call")
    return {"n": event["n"] * 2}


@pytest.fixture(autouse=True)
def clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fix real time at NOW, and forget double()'s calls."""
    CALLS.clear()
    monkeypatch.setattr(asl, "time", types.SimpleNamespace(time=lambda: NOW))


def machine(map_state: State, *, after: State | None = None, timeout: int | None = None) -> State:
    """A definition: ``Map`` (its Catch goes to ``Caught``), then ``Done``."""
    states = {
        "Map": {"Type": "Map", "Next": "Done", **map_state},
        "Done": after or {"Type": "Succeed"},
        "Caught": {"Type": "Pass", "Next": "Done"},
    }
    return {"StartAt": "Map", "States": states, **({"TimeoutSeconds": timeout} if timeout else {})}


def processor(start: str, states: State) -> State:
    """An inline ItemProcessor, as CDK's ``Map.item_processor`` renders it."""
    return {"ProcessorConfig": {"Mode": "INLINE"}, "StartAt": start, "States": states}


def run(definition: State, given: Any, functions: dict[str, Function] | None = None) -> tuple[Execution, float]:
    """One execution of ``definition`` by a fresh interpreter, and the virtual seconds it waited."""
    interpreter = Interpreter(definition, functions or {})
    execution = interpreter.run(given, "run-1")
    return execution, interpreter.waited


# --- items, ItemSelector, results --------------------------------------------------------------------


def test_each_item_runs_the_processor_with_the_selected_input_and_results_keep_item_order() -> None:
    definition = machine(
        {
            "ItemsPath": "$.devices",
            "ItemSelector": {
                "device.$": "$$.Map.Item.Value",
                "index.$": "$$.Map.Item.Index",
                "run.$": "$$.Execution.Name",
                "stage.$": "$.stage",
                "fixed": {"kind": "batch"},
            },
            "ItemProcessor": processor(
                "Tag",
                {
                    "Tag": {"Type": "Pass", "Result": "tagged", "ResultPath": "$.tag", "Next": "Done"},
                    "Done": {"Type": "Pass", "End": True},  # the processor's own Done, not the machine's
                },
            ),
            "MaxConcurrency": 2,
            "ResultPath": "$.results",
        }
    )

    execution, waited = run(definition, {"devices": ["a", "b", "c"], "stage": "dev"})

    assert (execution.status, execution.error) == ("SUCCEEDED", None)
    assert execution.output == {
        "devices": ["a", "b", "c"],
        "stage": "dev",
        "results": [
            {"device": d, "index": i, "run": "run-1", "stage": "dev", "fixed": {"kind": "batch"}, "tag": "tagged"}
            for i, d in enumerate("abc")
        ],
    }
    assert execution.path == ["Map", *["Tag", "Done"] * 3, "Done"]
    assert waited == 0


def test_without_item_selector_the_item_is_the_input_and_choice_succeed_and_fail_states_end_iterations() -> None:
    definition = machine(
        {
            "ItemProcessor": processor(
                "Kind?",
                {
                    "Kind?": {
                        "Type": "Choice",
                        "Choices": [
                            {"Variable": "$.kind", "StringEquals": "skip", "Next": "Skipped"},
                            {"Variable": "$.kind", "StringEquals": "bad", "Next": "Bad"},
                        ],
                        "Default": "Mark",
                    },
                    "Skipped": {"Type": "Succeed"},
                    "Bad": {"Type": "Fail", "Error": "BadItem", "Cause": "a bad one"},
                    "Mark": {"Type": "Pass", "Result": True, "ResultPath": "$.marked", "End": True},
                },
            ),
            "ResultSelector": {"all.$": "$", "label": "marks"},
        }
    )

    execution, _ = run(definition, [{"kind": "skip"}, {"kind": "go"}])

    assert execution.status == "SUCCEEDED"
    assert execution.output == {"all": [{"kind": "skip"}, {"kind": "go", "marked": True}], "label": "marks"}
    assert execution.path == ["Map", "Kind?", "Skipped", "Kind?", "Mark", "Done"]

    failed, _ = run(definition, [{"kind": "go"}, {"kind": "bad"}, {"kind": "go"}])

    assert (failed.status, failed.error, failed.cause, failed.output) == ("FAILED", "BadItem", "a bad one", None)
    assert failed.path == ["Map", "Kind?", "Mark", "Kind?", "Bad"], "the failing iteration fails the Map"


def test_an_empty_array_gives_an_empty_result_and_a_null_result_path_keeps_the_input() -> None:
    passing = processor("P", {"P": {"Type": "Pass", "Result": "dropped", "End": True}})

    execution, _ = run(machine({"ItemsPath": "$.items", "ItemProcessor": passing}), {"items": []})
    assert (execution.output, execution.path) == ([], ["Map", "Done"])

    execution, _ = run(machine({"ItemProcessor": passing, "ResultPath": None}), [1, 2])
    assert (execution.output, execution.path) == ([1, 2], ["Map", "P", "P", "Done"])


# --- errors: Catch, Retry, States.Runtime ---------------------------------------------------------


FAILING = {
    "ItemsPath": "$.items",
    "ItemProcessor": processor(
        "Odd?",
        {
            "Odd?": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.odd", "BooleanEquals": True, "Next": "Odd"}],
                "Default": "Fine",
            },
            "Odd": {"Type": "Fail", "Error": "OddItem", "Cause": "odd"},
            "Fine": {"Type": "Pass", "End": True},
        },
    ),
    "ResultPath": "$.results",
    "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Caught"}],
}


def test_a_failing_iteration_is_caught_by_the_maps_catch_and_later_items_do_not_run() -> None:
    given = {"items": [{"odd": False}, {"odd": True}, {"odd": False}]}

    execution, _ = run(machine(FAILING), given)

    assert execution.status == "SUCCEEDED"
    assert execution.output == {**given, "error": {"Error": "OddItem", "Cause": "odd"}}
    assert execution.path == ["Map", "Odd?", "Fine", "Odd?", "Odd", "Caught", "Done"]


def test_the_maps_retry_runs_every_iteration_again() -> None:
    functions = {"Fn": Function(f"{__name__}.double", {})}
    definition = machine(
        {
            "ItemProcessor": processor("Double", {"Double": {"Type": "Task", "Resource": "<Fn>", "End": True}}),
            "Retry": [{"ErrorEquals": ["Flaky"], "MaxAttempts": 1}],
        }
    )
    seen: list[str] = []
    interpreter = Interpreter(definition, functions, before_task=lambda name, _: seen.append(name))

    execution = interpreter.run([{"n": 1}, {"n": 2}, {"n": 3}], "run-1")

    assert (execution.status, execution.output) == ("SUCCEEDED", [{"n": 2}, {"n": 4}, {"n": 6}])
    assert [call["n"] for call in CALLS] == [1, 2, 1, 2, 3], "the second call failed: all items again"
    assert execution.retries == {"Map": 1} and execution.invocations == {"Double": 5}
    assert execution.path == ["Map", *["Double"] * 5, "Done"] and seen == ["Double"] * 5


def test_invoke_finds_a_task_inside_a_map_by_its_name() -> None:
    functions = {"Fn": Function(f"{__name__}.double", {})}
    definition = machine(
        {"ItemProcessor": processor("Double", {"Double": {"Type": "Task", "Resource": "<Fn>", "End": True}})}
    )

    assert Interpreter(definition, functions).invoke("Double", {"n": 21}) == {"n": 42}
    with pytest.raises(ValueError):
        Interpreter(definition, functions).invoke("Missing", {"n": 21})


def test_an_error_no_catch_takes_fails_the_run_with_the_iterations_error() -> None:
    definition = machine({**FAILING, "Catch": [{"ErrorEquals": ["Other"], "Next": "Caught"}]})

    execution, _ = run(definition, {"items": [{"odd": True}]})

    assert (execution.status, execution.error, execution.cause) == ("FAILED", "OddItem", "odd")
    assert execution.path == ["Map", "Odd?", "Odd"]


def test_items_that_are_not_an_array_fail_the_run_whatever_the_catch() -> None:
    execution, _ = run(machine(FAILING), {"items": {"a": 1}})

    assert (execution.status, execution.error) == ("FAILED", "States.Runtime")
    assert execution.path == ["Map"]


# --- refused definitions --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "refusal"),
    [
        ({"Parameters": {"x.$": "$"}}, "Map: unsupported"),  # the deprecated ItemSelector
        ({"ToleratedFailureCount": 1}, "Map: unsupported"),  # Distributed Map only
        (
            {
                "ItemProcessor": {
                    **processor("P", {"P": {"Type": "Pass", "End": True}}),
                    "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                }
            },
            "Map: only INLINE",
        ),
        ({"ItemProcessor": processor("P", {"P": {"Type": "Pass", "End": True, "OutputPath": "$"}})}, "P: unsupported"),
    ],
    ids=["Parameters", "ToleratedFailureCount", "DISTRIBUTED", "nested OutputPath"],
)
def test_a_map_field_or_mode_outside_the_subset_is_refused(change: State, refusal: str) -> None:
    definition = machine({"ItemProcessor": processor("P", {"P": {"Type": "Pass", "End": True}}), **change})

    with pytest.raises(AssertionError, match=refusal):
        run(definition, [1])


# --- Wait: TimestampPath, SecondsPath ------------------------------------------------------------


def waiting(how: State) -> State:
    """A definition: one Wait, then Succeed."""
    return {"StartAt": "Wait", "States": {"Wait": {"Type": "Wait", "Next": "Done", **how}, "Done": {"Type": "Succeed"}}}


@pytest.mark.parametrize(
    ("at", "seconds"),
    [
        ("2026-12-03T15:30:00Z", 1800),
        ("2026-12-03T15:30:00.750Z", 1800),  # Step Functions truncates to whole seconds
        ("2026-12-03T16:00:00+00:00", 3600),
        ("2026-12-03T14:00:00Z", 0),  # in the past: no wait
        ("2026-12-03T15:00:00Z", 0),
    ],
)
def test_a_timestamp_wait_advances_the_virtual_clock_up_to_the_timestamp(at: str, seconds: int) -> None:
    execution, waited = run(waiting({"TimestampPath": "$.at"}), {"at": at})

    assert execution.status == "SUCCEEDED" and execution.waits == {"Wait": 1}
    assert waited == seconds


def test_timestamp_waits_in_iterations_count_from_the_clock_as_it_stands() -> None:
    definition = machine(
        {
            "ItemSelector": {"at.$": "$$.Map.Item.Value"},
            "ItemProcessor": processor("Until", {"Until": {"Type": "Wait", "TimestampPath": "$.at", "End": True}}),
        }
    )
    times = ["2026-12-03T15:10:00Z", "2026-12-03T15:05:00Z", "2026-12-03T15:30:00Z"]

    interpreter = Interpreter(definition, {})
    execution = interpreter.run(times, "run-1")

    assert interpreter.waited == 1800 and interpreter.now() == NOW + 1800, "the second one had already passed"
    assert execution.waits == {"Until": 3} and execution.output == [{"at": t} for t in times]


def test_a_seconds_path_wait_and_the_runs_timeout_apply_to_timestamp_waits() -> None:
    execution, waited = run(waiting({"SecondsPath": "$.s"}), {"s": 90})
    assert (execution.status, waited) == ("SUCCEEDED", 90)

    late = {**waiting({"TimestampPath": "$.at"}), "TimeoutSeconds": 600}
    execution, waited = run(late, {"at": "2026-12-03T15:20:00Z"})
    assert (execution.status, execution.error, waited) == ("TIMED_OUT", "States.Timeout", 1200)
    assert execution.path == ["Wait"]


@pytest.mark.parametrize(
    ("how", "given"),
    [
        ({"TimestampPath": "$.at"}, {"at": "2026-12-03T15:30:00"}),  # no zone
        ({"TimestampPath": "$.at"}, {"at": "tomorrow"}),
        ({"SecondsPath": "$.s"}, {"s": -1}),
        ({"SecondsPath": "$.s"}, {"s": "10"}),
    ],
)
def test_a_wait_on_a_value_that_is_no_time_fails_the_run(how: State, given: State) -> None:
    execution, waited = run(waiting(how), given)

    assert (execution.status, execution.error, waited) == ("FAILED", "States.Runtime", 0)
