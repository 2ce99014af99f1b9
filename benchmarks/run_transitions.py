"""State transitions and Lambda invocations of one successful run, computed from the definition.

Synthesizes the dev config's pipeline stack, then walks its state machine definition the way a
successful run goes: every wait loop's check reports IN_PROGRESS ``N`` times (``N`` polls: ``N``
Wait states and ``N`` extra checks) before it reports done, the deployment lock is free at once, and
the deployment Map runs ``B`` batches of devices (each deployed everywhere). Counts every state
entered (what Step Functions bills as state transitions) and every Task state (one Lambda invocation
each, no retries). Run with ``make bench-pipeline``; prints a table and the linear formula.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def synthesized_definition(config_path: Path) -> dict[str, Any]:
    """The state machine definition of ``config_path``'s pipeline stack, GetAtt tokens stubbed."""
    import aws_cdk as cdk

    from panopipe.config import load_config
    from stacks.stage import EnvironmentStage
    from tests.conftest import cdk_context

    with tempfile.TemporaryDirectory() as outdir:
        app = cdk.App(context=cdk_context(), outdir=outdir)
        stage = EnvironmentStage(app, "bench", config=load_config(config_path, base_dir=ROOT))
        template = cdk.assertions.Template.from_stack(stage.pipeline).to_json()
    (machine,) = [r for r in template["Resources"].values() if r["Type"] == "AWS::StepFunctions::StateMachine"]
    parts = machine["Properties"]["DefinitionString"]["Fn::Join"][1]
    return json.loads("".join(p if isinstance(p, str) else "<arn>" for p in parts))  # type: ignore[no-any-return]


def walk(definition: dict[str, Any], source_kind: str, polls: int, batches: int = 1) -> tuple[int, int]:
    """(states entered, Lambda invocations) of a successful run with ``polls`` polls per loop, ``batches`` batches."""
    states = definition["States"]
    name, entered, invocations = definition["StartAt"], 0, 0
    pending: dict[str, int] = {"$.lock.status": 0}  # the lock is free: no wait
    while True:
        state = states[name]
        entered += 1
        kind = state["Type"]
        if kind == "Task":
            invocations += 1
        if kind == "Map":  # every iteration: one batch of devices
            inner, invoked = walk(state["ItemProcessor"], source_kind, polls)
            entered, invocations = entered + batches * inner, invocations + batches * invoked
        if kind in ("Succeed", "Fail") or state.get("End"):
            return entered, invocations
        name = _choose(state, source_kind, polls, pending) if kind == "Choice" else state["Next"]


def _choose(state: dict[str, Any], source_kind: str, polls: int, pending: dict[str, int]) -> str:
    """The branch a successful run takes: N times IN_PROGRESS per loop, then done/SUCCEEDED."""
    for choice in state["Choices"]:
        if "StringEquals" not in choice:  # "Prepare first?": a prepared data set (the default) goes on
            continue
        variable, value = choice["Variable"], choice["StringEquals"]
        if variable == "$.source.kind":
            return str(choice["Next"]) if value == source_kind else str(state["Default"])
        if value == "IN_PROGRESS":
            left = pending.setdefault(variable, polls)
            if left > 0:
                pending[variable] = left - 1
                return str(choice["Next"])
        elif value == "SUCCEEDED":
            return str(choice["Next"])
    return str(state["Default"])


def main() -> None:
    definition = synthesized_definition(ROOT / "config" / "dev.yaml")
    print(f"{'source':<14}{'polls/loop':>11}{'batches':>9}{'transitions':>13}{'invocations':>13}")
    for kind, label in (("dataset", "data set"), ("model", "model/job")):
        rows = [(n, b, *walk(definition, kind, n, b)) for b in (1, 10) for n in (0, 1, 2, 5, 10)]
        for n, b, entered, invoked in rows:
            print(f"{label:<14}{n:>11}{b:>9}{entered:>13}{invoked:>13}")
        at = {(n, b): (t, i) for n, b, t, i in rows}
        (t00, i00), (t10, i10), (t01, i01), (t11, i11) = at[0, 1], at[1, 1], at[0, 10], at[1, 10]
        per_batch_t, per_batch_i = (t01 - t00) // 9, (i01 - i00) // 9
        per_poll_batch_t, per_poll_batch_i = (t11 - t01 - (t10 - t00)) // 9, (i11 - i01 - (i10 - i00)) // 9
        print(
            f"  {label}: transitions = {t00 - per_batch_t} + {t10 - t00 - per_poll_batch_t}·N + "
            f"B·({per_batch_t} + {per_poll_batch_t}·N); Lambda invocations = {i00 - per_batch_i} + "
            f"{i10 - i00 - per_poll_batch_i}·N + B·({per_batch_i} + {per_poll_batch_i}·N)"
        )


if __name__ == "__main__":
    main()
