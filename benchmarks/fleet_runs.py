"""A run deploying to 1, 20 and 200 local devices: wall time, Lambda invocations, state transitions.

One local AWS with 200 devices, tagged so that a tag group selects the first 1, 20 or 200 of them;
the pipeline is redeployed with ``devices: [{tags: …}]`` for each size, and a model run (compile →
lock → register → deploy) is timed and counted from its execution history. A data-set run first
trains the model the three runs deploy (the sample data set). ``make bench-fleet``.
"""

from __future__ import annotations

from dataclasses import asdict

from benchmarks.local_pipeline import counted, local_pipeline, save, train, wait
from panopipe import runs

SIZES = (1, 20, 200)


def device_specs(count: int) -> list[str]:
    """``local-device-<i>`` tagged ``n<size>=y`` for every size it belongs to."""
    return [
        f"local-device-{i}," + ",".join(f"n{size}=y" for size in SIZES if i <= size) for i in range(1, count + 1)
    ]


def main() -> None:
    results = []
    with local_pipeline(device_specs(max(SIZES)), {"devices": [{"tags": {"n1": "y"}}]}) as local:
        trained = wait(local.target, train(local.target, "bench-fleet"))
        assert trained.status == "SUCCEEDED", (trained.error, trained.cause)
        model = (trained.output or {})["model"]["s3_uri"]
        for size in SIZES:
            deploy_seconds = local.redeploy({"devices": [{"tags": {f"n{size}": "y"}}]})
            arn = runs.start(local.target, {"model": model}, f"fleet-{size}")
            ended = wait(local.target, arn)
            assert ended.status == "SUCCEEDED", (size, ended.error, ended.cause)
            cost = counted(arn)
            counts = (ended.output or {}).get("fleet", {}).get("counts")
            results.append({"devices": size, **asdict(cost), "counts": counts, "stack_update_seconds": deploy_seconds})
            print(
                f"{size:>4} devices: {cost.seconds:7.1f} s wall, {cost.invocations:4d} Lambda invocations, "
                f"{cost.transitions:5d} state transitions, largest state {cost.largest_state_bytes / 1024:.1f} KiB"
            )
    print(f"results: {save('fleet_runs', results)}")


if __name__ == "__main__":
    main()
