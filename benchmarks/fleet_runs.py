"""A run deploying to 1, 20 and 200 local devices: wall time, Lambda invocations, state transitions.

For each size, a fresh local AWS with that many devices tagged ``fleet=bench``, the pipeline deployed
with ``devices: [{tags: {fleet: bench}}]``; a data-set run trains the model (the sample data set),
then a model run (compile → lock → register → deploy to the fleet) is timed and counted from its
execution history. ``make bench-fleet``.
"""

from __future__ import annotations

from dataclasses import asdict

from local_pipeline import counted, local_pipeline, save, train, wait

from panopipe import runs

SIZES = (1, 20, 200)


def main() -> None:
    results = []
    for size in SIZES:
        specs = [f"local-device-{i},fleet=bench" for i in range(1, size + 1)]
        with local_pipeline(specs, {"devices": [{"tags": {"fleet": "bench"}}]}) as local:
            trained = wait(local.target, train(local.target, f"bench-fleet-{size}"))
            assert trained.status == "SUCCEEDED", (trained.error, trained.cause)
            model = (trained.output or {})["model"]["s3_uri"]
            arn = runs.start(local.target, {"model": model}, f"fleet-{size}")
            ended = wait(local.target, arn)
            assert ended.status == "SUCCEEDED", (size, ended.error, ended.cause)
            cost = counted(arn)
            counts = (ended.output or {}).get("fleet", {}).get("counts")
            results.append({"devices": size, **asdict(cost), "counts": counts})
            print(
                f"{size:>4} devices: {cost.seconds:7.1f} s wall, {cost.invocations:4d} Lambda invocations, "
                f"{cost.transitions:5d} state transitions, largest state {cost.largest_state_bytes / 1024:.1f} KiB"
            )
    print(f"results: {save('fleet_runs', results)}")


if __name__ == "__main__":
    main()
