"""Three data sets uploaded at the same moment, ten times: one instance per device, the newest deployed.

One local AWS with 5 devices (a tag group); each round uploads three copies of the sample data set
from three threads (their markers land within the same second or two), waits for the three runs the
trigger starts, and checks: every run SUCCEEDED (deployed, or SUPERSEDED by newer data); on every
device exactly one instance of the application is active; every device's ``last-good`` is the run of
the newest data set (marker time, then folder name, as the lock orders them); the lock is free.
``make bench-concurrency`` (``BENCH_ROUNDS`` to change the 10).
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

import boto3
from local_pipeline import Local, local_pipeline, median, save, train, wait

from lambda_handlers.aws import panorama
from lambda_handlers.domain import READY_MARKER

DEVICES = 5
ACTIVE = {"DEPLOYMENT_PENDING", "DEPLOYMENT_REQUESTED", "DEPLOYMENT_IN_PROGRESS", "DEPLOYMENT_SUCCEEDED"}


def one_round(local: Local, round_number: int) -> dict[str, Any]:
    names = [f"round-{round_number:02d}-{letter}" for letter in "abc"]
    arns: dict[str, str] = {}
    started = time.monotonic()

    def upload(name: str) -> None:
        arns[name] = train(local.target, name)

    threads = [threading.Thread(target=upload, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ended = {name: wait(local.target, arn) for name, arn in arns.items()}
    seconds = time.monotonic() - started
    s3 = boto3.client("s3")
    marker_time = {
        name: s3.head_object(Bucket=local.target.data_bucket, Key=f"datasets/{name}/{READY_MARKER}")["LastModified"]
        for name in names
    }
    newest = max(names, key=lambda n: (marker_time[n], f"datasets/{n}/"))
    outcomes = {name: (p.status, (p.output or {}).get("summary", {}).get("status")) for name, p in ended.items()}
    problems = [f"{n}: {p.status} {p.error} {p.cause}" for n, p in ended.items() if p.status != "SUCCEEDED"]
    client = panorama.new_client("us-east-1")
    devices = client.list_devices()["Devices"]
    for device in devices:
        listed = client.list_application_instances(DeviceId=device["DeviceId"])["ApplicationInstances"]
        active = [i for i in listed if i["Status"] in ACTIVE]
        if len(active) != 1:
            problems.append(f"{device['Name']}: {len(active)} active instances")
        key = f"deployments/{device['Name']}/last-good.json"
        good = json.loads(s3.get_object(Bucket=local.artifacts_bucket, Key=key)["Body"].read())
        if good["run"] != arns[newest].rsplit(":", 1)[1]:
            problems.append(f"{device['Name']}: last-good is {good['run']}, not the newest data set's run")
    lock = json.loads(s3.get_object(Bucket=local.artifacts_bucket, Key="locks/deployment.json")["Body"].read())
    if lock["holder"] is not None:
        problems.append(f"the lock is still held by {lock['holder']}")
    superseded = sum(summary == "SUPERSEDED" for _, summary in outcomes.values())
    print(
        f"round {round_number:2d}: {seconds:6.1f} s, newest {newest}, "
        f"{3 - superseded} deployed, {superseded} superseded, {problems or 'OK'}"
    )
    return {
        "round": round_number,
        "seconds": seconds,
        "newest": newest,
        "outcomes": outcomes,
        "marker_seconds_apart": (max(marker_time.values()) - min(marker_time.values())).total_seconds(),
        "problems": problems,
    }


def main() -> None:
    rounds = int(os.environ.get("BENCH_ROUNDS", "10"))
    specs = [f"local-device-{i},fleet=bench" for i in range(1, DEVICES + 1)]
    with local_pipeline(specs, {"devices": [{"tags": {"fleet": "bench"}}], "runs": {"deploy_batch_size": 2}}) as local:
        results = [one_round(local, number) for number in range(1, rounds + 1)]
    failed = [r for r in results if r["problems"]]
    print(
        f"{rounds} rounds, {len(failed)} with a problem; median round {median([r['seconds'] for r in results]):.1f} s; "
        f"superseded runs: {sum(s == 'SUPERSEDED' for r in results for _, s in r['outcomes'].values())}"
    )
    print(f"results: {save('concurrent_runs', results)}")


if __name__ == "__main__":
    main()
