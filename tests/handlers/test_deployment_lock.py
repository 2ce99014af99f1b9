"""The deployment lock: acquire, wait, time out, expire and take over, renew, release, supersede (S3 through moto)."""

from __future__ import annotations

import json
import time
import types
from typing import Any

import boto3
import pytest

from lambda_handlers import deployment_lock as lock
from lambda_handlers import settings as cfg
from lambda_handlers import state as state_module
from lambda_handlers.deployment_lock import LOCK_KEY, LockLost, LockWaitTimedOut
from lambda_handlers.settings import StepSettings, install
from tests.handlers.conftest import make_settings

ARTIFACTS = "panopipe-dev-artifacts-lock"
DATA = "panopipe-dev-data-lock"
LEASE = 1800


@pytest.fixture
def s3(aws: None, settings: StepSettings, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv(cfg.ARTIFACTS_BUCKET, ARTIFACTS)
    install(make_settings({"runs.lock_lease_seconds": LEASE, "runs.lock_wait_seconds": 600}))
    client = boto3.client("s3", region_name="us-east-1")
    for bucket in (ARTIFACTS, DATA):
        client.create_bucket(Bucket=bucket)
    return client


def _run(name: str, started: str = "2026-12-01T10:00:00.000Z", dataset: str | None = None) -> dict[str, Any]:
    source: dict[str, Any] = (
        {"kind": "dataset", "bucket": DATA, "prefix": dataset} if dataset else {"kind": "model", "s3_uri": "s3://m"}
    )
    return {"run": {"name": name, "started": started}, "source": source}


def _record(s3: Any) -> dict[str, Any]:
    return json.loads(s3.get_object(Bucket=ARTIFACTS, Key=LOCK_KEY)["Body"].read())  # type: ignore[no-any-return]


def _deployed(state: dict[str, Any]) -> dict[str, Any]:
    return {**state, "deployment": {"status": "SUCCEEDED", "devices": [{"device": "d", "status": "SUCCEEDED"}]}}


def test_a_free_lock_is_taken_with_a_lease_and_a_retried_acquire_keeps_it(s3: Any) -> None:
    before = time.time()
    held = lock.acquire_lock(_run("run-a"))
    assert held["lock"]["status"] == "SUCCEEDED" and held["lock"]["polls"] == 0
    record = _record(s3)
    assert record["holder"] == "run-a" and before + LEASE <= record["expires"] <= time.time() + LEASE
    assert lock.acquire_lock(_run("run-a"))["lock"]["status"] == "SUCCEEDED", "a retry adopts its own lock"


def test_a_second_run_waits_naming_the_holder_then_times_out(s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    lock.acquire_lock(_run("run-a"))
    waiting = lock.acquire_lock(_run("run-b", started="2026-12-01T10:00:01.000Z"))
    assert waiting["lock"]["status"] == "IN_PROGRESS" and waiting["lock"]["holder"] == "run-a"
    again = lock.check_lock(waiting)
    assert again["lock"]["status"] == "IN_PROGRESS" and again["lock"]["polls"] == 1
    monkeypatch.setattr(state_module, "time", types.SimpleNamespace(time=lambda: waiting["lock"]["deadline"] + 1.0))
    with pytest.raises(LockWaitTimedOut, match=r"waited 600 s \(runs.lock_wait_seconds\) .* run run-a holds it since"):
        lock.check_lock(again)


def test_the_waiting_run_gets_the_lock_once_it_is_released(s3: Any) -> None:
    first = lock.acquire_lock(_run("run-a"))
    waiting = lock.acquire_lock(_run("run-b", started="2026-12-01T10:00:01.000Z"))
    released = lock.release_lock(first)
    assert released["lock"]["status"] == "RELEASED" and _record(s3)["holder"] is None
    assert lock.check_lock(waiting)["lock"]["status"] == "SUCCEEDED"
    assert _record(s3)["holder"] == "run-b"


def test_an_expired_lease_is_taken_over_and_its_old_holder_stops_at_its_next_step(
    s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    crashed = lock.acquire_lock(_run("run-a"))
    later = time.time() + LEASE + 1
    monkeypatch.setattr(lock, "time", types.SimpleNamespace(time=lambda: later))
    taken = lock.acquire_lock(_run("run-b", started="2026-12-01T10:00:01.000Z"))
    assert taken["lock"]["status"] == "SUCCEEDED" and _record(s3)["holder"] == "run-b"
    with pytest.raises(LockLost, match=r"held by run-b: this run's lease \(runs.lock_lease_seconds = 1800\) ran out"):
        lock.renew(crashed)
    assert lock.release_lock(crashed)["lock"]["status"] == "RELEASED"
    assert _record(s3)["holder"] == "run-b", "a run that lost the lock never frees the new holder's"


def test_renew_rewrites_the_lease_unless_it_was_a_minute_ago(s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    held = lock.acquire_lock(_run("run-a"))
    first = _record(s3)["expires"]
    lock.renew(held)
    assert _record(s3)["expires"] == first, "renewed less than a minute ago: no write"
    later = time.time() + lock.RENEW_AFTER_SECONDS + 1
    monkeypatch.setattr(lock, "time", types.SimpleNamespace(time=lambda: later))
    lock.renew(held)
    assert _record(s3)["expires"] == pytest.approx(later + LEASE)


def test_a_step_called_without_a_lock_section_renews_nothing(s3: Any) -> None:
    lock.renew(_run("run-a"))  # type: ignore[arg-type]
    with pytest.raises(s3.exceptions.NoSuchKey):
        s3.get_object(Bucket=ARTIFACTS, Key=LOCK_KEY)


def test_a_lost_race_reads_again_and_waits_for_the_winner(s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both runs read a free lock; S3 lets only the first conditional write through (412 for the other)."""
    stale = lock._read(s3, ARTIFACTS)
    lock.acquire_lock(_run("run-a"))
    reads = iter([stale])
    real = lock._read
    monkeypatch.setattr(lock, "_read", lambda client, bucket: next(reads, None) or real(client, bucket))
    waiting = lock.acquire_lock(_run("run-b", started="2026-12-01T10:00:01.000Z"))
    assert waiting["lock"]["status"] == "IN_PROGRESS" and waiting["lock"]["holder"] == "run-a"
    assert _record(s3)["holder"] == "run-a"


def test_release_records_the_deployed_data_and_an_older_run_is_superseded(s3: Any) -> None:
    for prefix in ("datasets/a/", "datasets/b/"):
        s3.put_object(Bucket=DATA, Key=f"{prefix}_READY", Body=b"")
    newer = lock.acquire_lock(_run("run-new", dataset="datasets/b/"))
    older_state = _run("run-old", dataset="datasets/a/")
    older = lock.acquire_lock(older_state)
    assert older["lock"]["status"] == "IN_PROGRESS"
    lock.release_lock(_deployed(newer))
    deployed = _record(s3)["deployed"]
    assert deployed["run"] == "run-new" and deployed["id"] == "datasets/b/"
    superseded = lock.check_lock(older)
    assert superseded["lock"]["status"] == "SUPERSEDED"
    assert (
        superseded["lock"]["reason"].startswith("data datasets/a/ (")
        and "deployed by run run-new" in (superseded["lock"]["reason"])
    )
    assert _record(s3)["holder"] is None, "a superseded run never takes the lock"


def test_the_same_data_run_again_is_not_superseded_and_a_failed_run_records_nothing(s3: Any) -> None:
    s3.put_object(Bucket=DATA, Key="datasets/a/_READY", Body=b"")
    first = lock.acquire_lock(_run("run-1", dataset="datasets/a/"))
    lock.release_lock(_deployed(first))
    again = lock.acquire_lock(_run("run-2", dataset="datasets/a/"))
    assert again["lock"]["status"] == "SUCCEEDED", "redeploying the same data is allowed"
    failed = {**again, "deployment": {"status": "FAILED", "devices": [{"device": "d", "status": "FAILED"}]}}
    lock.release_lock(failed)
    assert _record(s3)["deployed"]["run"] == "run-1"


def test_the_data_time_is_the_markers_else_the_runs_start(s3: Any) -> None:
    s3.put_object(Bucket=DATA, Key="datasets/a/_READY", Body=b"")
    marked = lock.data_version(_run("r", dataset="datasets/a/"))  # type: ignore[arg-type]
    assert marked["id"] == "datasets/a/" and marked["source"] == f"s3://{DATA}/datasets/a/_READY"
    assert marked["time"].endswith("Z") and marked["time"] != "2026-12-01T10:00:00.000Z"
    unmarked = lock.data_version(_run("r", dataset="datasets/none/"))  # type: ignore[arg-type]
    assert unmarked["time"] == "2026-12-01T10:00:00.000Z" and "no marker" in unmarked["source"]
    assert lock._key(unmarked) == lock._key({"time": "2026-12-01T10:00:00Z", "id": "datasets/none/"})
    model = lock.data_version(_run("r"))  # type: ignore[arg-type]
    assert (model["time"], model["id"], model["source"]) == ("2026-12-01T10:00:00.000Z", "r", "run start")


def test_data_versions_order_by_time_then_id() -> None:
    early = {"time": "2026-12-01T10:00:00Z", "id": "datasets/z/"}
    late = {"time": "2026-12-01T10:00:00.500+00:00", "id": "datasets/a/"}
    same_time = {"time": "2026-12-01T10:00:00.000Z", "id": "datasets/zz/"}
    assert lock._key(late) > lock._key(early)
    assert lock._key(same_time) > lock._key(early), "markers of the same second: by folder, as the trigger orders"


def test_a_free_lock_goes_to_the_newest_waiting_run_and_the_older_ends_superseded(s3: Any) -> None:
    holder = lock.acquire_lock(_run("run-a", started="2026-12-01T09:00:00.000Z"))
    older = lock.acquire_lock(_run("run-old", started="2026-12-01T10:00:00.000Z"))
    newer = lock.acquire_lock(_run("run-new", started="2026-12-01T10:00:05.000Z"))
    assert set(_record(s3)["waiting"]) == {"run-old", "run-new"}
    lock.release_lock(holder)  # run-a deployed nothing

    yielding = lock.check_lock(older)
    assert yielding["lock"]["status"] == "IN_PROGRESS" and yielding["lock"]["holder"] == "run-new"
    taken = lock.check_lock(newer)
    assert taken["lock"]["status"] == "SUCCEEDED" and set(_record(s3)["waiting"]) == {"run-old"}
    lock.release_lock(_deployed(taken))
    assert lock.check_lock(yielding)["lock"]["status"] == "SUPERSEDED", "older data never deploys in between"


def test_a_newer_run_that_stopped_waiting_no_longer_holds_the_others_back(
    s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    holder = lock.acquire_lock(_run("run-a", started="2026-12-01T09:00:00.000Z"))
    older = lock.acquire_lock(_run("run-old", started="2026-12-01T10:00:00.000Z"))
    lock.acquire_lock(_run("run-gone", started="2026-12-01T10:00:05.000Z"))  # then its execution was stopped
    lock.release_lock(holder)
    assert lock.check_lock(older)["lock"]["holder"] == "run-gone"
    later = time.time() + lock._waiter_lifetime() + 1
    monkeypatch.setattr(lock, "time", types.SimpleNamespace(time=lambda: later))
    assert lock.check_lock(older)["lock"]["status"] == "SUCCEEDED"


def test_a_waiting_run_notes_itself_once_a_minute_not_at_every_poll(s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    lock.acquire_lock(_run("run-a"))
    writes: list[dict[str, Any]] = []
    real = lock._swap

    def counted(client: Any, bucket: str, record: Any, etag: str | None) -> bool:
        writes.append(record)
        return real(client, bucket, record, etag)

    monkeypatch.setattr(lock, "_swap", counted)
    waiting = lock.acquire_lock(_run("run-b", started="2026-12-01T10:00:01.000Z"))
    for _ in range(3):
        waiting = lock.check_lock(waiting)
    assert len(writes) == 1 and set(writes[0]["waiting"]) == {"run-b"}
    assert waiting["lock"]["status"] == "IN_PROGRESS"
