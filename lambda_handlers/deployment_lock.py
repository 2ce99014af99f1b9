"""One deployment at a time per environment, newest data wins: a leased lock taken with S3 conditional writes.

Runs may prepare, train and compile in parallel; from package registration to the end of the
deployment and its rollbacks they hold the environment's lock, one object in the artifacts bucket
(:data:`LOCK_KEY`). Every change of it is a compare-and-swap: PutObject with ``IfNoneMatch: "*"``
creates it, PutObject with ``IfMatch: <ETag>`` changes it; of two runs racing, S3 lets exactly one
write through and answers the other 412 PreconditionFailed (or 409 ConditionalRequestConflict), and
that run reads the object again. The record::

    {"holder": <run> | null, "expires": <epoch s>, "acquired": <epoch s>, "data": {"time", "id"},
     "deployed": {"run", "time", "id"} | null}

- A lease: the holder's every locked step renews ``expires`` (:func:`renew`); a run that crashed,
  timed out or was stopped without releasing loses the lock ``lock_lease_seconds`` after its last
  step, and the next run takes it over. A run that finds its lease taken over stops (:class:`LockLost`) before it
  touches a device.
- Newest data wins: a run's data is its data set's ``_READY`` marker time (LastModified, to the
  second; ties broken by the data set's folder, as the trigger orders markers), or, for a model or
  training-job run, the run's start time. ``deployed`` is the data of the last run that deployed to
  at least one device; a run whose data is older ends SUPERSEDED, deploys nothing, and says why.
  Waiting runs note themselves in ``waiting``; a free lock goes to the newest of them (one that has
  not tried for a few polls no longer counts), so older runs end superseded without deploying.

Steps: :func:`acquire_lock` (the first try; starts the wait loop), :func:`check_lock` (each next try;
past ``lock_wait_seconds`` the run fails with :class:`LockWaitTimedOut`) → section ``lock`` with
status SUCCEEDED (held), IN_PROGRESS (waiting) or SUPERSEDED; :func:`release_lock` on every path
out of the locked steps, success or failure.

Environment: ARTIFACTS_BUCKET, STEP_SETTINGS. Reads the data bucket's ``_READY`` markers (HeadObject).
"""

from __future__ import annotations

import datetime
import json
import time
from typing import TYPE_CHECKING, Any, TypedDict, cast

from botocore.exceptions import ClientError

from lambda_handlers import settings
from lambda_handlers.aws import clients
from lambda_handlers.aws.client_errors import S3_ACCESS_DENIED, S3_NOT_FOUND, error_code
from lambda_handlers.domain import READY_MARKER, iso_utc
from lambda_handlers.errors import PipelineError, TransientError
from lambda_handlers.state import (
    IN_PROGRESS,
    SUCCEEDED,
    DataVersion,
    LockSection,
    RunState,
    loop_started,
    past,
    run_name,
)
from lambda_handlers.step import logger, step

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

LOCK_KEY = "locks/deployment.json"
SUPERSEDED = "SUPERSEDED"
RELEASED = "RELEASED"
#: A lease renewed less than this long ago is not rewritten.
RENEW_AFTER_SECONDS = 60
#: A conditional write lost to another run's: read again and retry, this many times in one call.
_ATTEMPTS = 8
#: What S3 answers the loser of a conditional write (or an IfMatch on an object deleted meanwhile).
_LOST_RACE = frozenset({"PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey", "412", "409"})


class LockWaitTimedOut(PipelineError):
    """The run waited ``lock_wait_seconds`` for another run's deployment and gave up."""


class LockLost(PipelineError):
    """The run's lease expired and another run took the lock: it must not touch the devices."""


class _Record(TypedDict, total=False):
    holder: str | None
    expires: float
    acquired: float
    data: DataVersion
    deployed: dict[str, str] | None
    waiting: dict[str, dict[str, Any]]  # run -> its data's time and id, and when it last tried


def _key(version: DataVersion | dict[str, str]) -> tuple[float, str]:
    """Sort key of a data version: its time (any ISO 8601 form) then its id."""
    moment = datetime.datetime.fromisoformat(str(version["time"]).replace("Z", "+00:00"))
    return moment.timestamp(), str(version["id"])


def data_version(state: RunState) -> DataVersion:
    """What "newer" means for this run's data (see the module docstring)."""
    source = cast("dict[str, Any]", state.get("source") or {})
    started = str(state["run"]["started"])
    if source.get("kind") == "dataset":
        s3, bucket, prefix = clients.s3(), str(source["bucket"]), str(source["prefix"])
        try:
            head = s3.head_object(Bucket=bucket, Key=prefix + READY_MARKER)
        except ClientError as error:
            if error_code(error) not in S3_NOT_FOUND | S3_ACCESS_DENIED:
                raise
            # no marker, or one outside runs.dataset_prefix (a run started by hand): the run's start
            return {"time": started, "id": prefix, "source": "run start (no marker under runs.dataset_prefix)"}
        return {"time": iso_utc(head["LastModified"]), "id": prefix, "source": f"s3://{bucket}/{prefix}{READY_MARKER}"}
    return {"time": started, "id": run_name(state), "source": "run start"}


def _read(s3: S3Client, bucket: str) -> tuple[_Record, str | None]:
    """The lock record and its ETag; a free record and None if there is none yet."""
    try:
        found = s3.get_object(Bucket=bucket, Key=LOCK_KEY)
    except s3.exceptions.NoSuchKey:
        return {"holder": None, "expires": 0, "deployed": None}, None
    return cast(_Record, json.loads(found["Body"].read())), str(found["ETag"])


def _swap(s3: S3Client, bucket: str, record: _Record, etag: str | None) -> bool:
    """Write ``record`` if the object is still ``etag`` (None: still absent); False if another run won."""
    condition: dict[str, str] = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
    body = json.dumps(record, sort_keys=True).encode("utf-8")
    try:
        s3.put_object(Bucket=bucket, Key=LOCK_KEY, Body=body, ContentType="application/json", **condition)  # type: ignore[arg-type]
    except ClientError as error:
        if error_code(error) in _LOST_RACE:
            return False
        raise
    return True


def _contended() -> TransientError:
    return TransientError(f"the deployment lock changed under {_ATTEMPTS} tries in a row: retrying")


def _waiting_newer(record: _Record, run: str, mine: DataVersion, now: float) -> str | None:
    """A run waiting for the lock, seen lately, whose data is newer than ``mine`` (it goes first), or None."""
    fresh_after = now - _waiter_lifetime()
    newer = [
        (_key(entry), other)
        for other, entry in (record.get("waiting") or {}).items()
        if other != run and float(entry.get("seen", 0)) > fresh_after and _key(entry) > _key(mine)
    ]
    return max(newer)[1] if newer else None


def _waiter_lifetime() -> float:
    """How long a waiting run counts without trying again (a few polls: after that it has stopped waiting)."""
    return 3 * settings.current().runs.poll_seconds + 120


def _as_waiting(record: _Record, run: str, mine: DataVersion, now: float) -> _Record | None:
    """``record`` with this run (re)noted as waiting, or None when it was noted less than a minute ago."""
    waiting = dict(record.get("waiting") or {})
    seen = float(waiting.get(run, {}).get("seen", 0))
    if now - seen < RENEW_AFTER_SECONDS:
        return None
    fresh_after = now - _waiter_lifetime()
    waiting = {other: entry for other, entry in waiting.items() if float(entry.get("seen", 0)) > fresh_after}
    waiting[run] = {"time": mine["time"], "id": mine["id"], "seen": now}
    return {**record, "waiting": waiting}


def _attempt(state: RunState) -> RunState:
    """One try: SUPERSEDED, SUCCEEDED (held, or already held by this run) or IN_PROGRESS (waiting).

    A run waits while another holds the lock, and also while a run with newer data waits for it:
    the newest goes first, so the older ones end superseded instead of deploying in between.
    """
    s3, bucket, run = clients.s3(), settings.env(settings.ARTIFACTS_BUCKET), run_name(state)
    lease = settings.current().runs.lock_lease_seconds
    lock = state["lock"]
    mine = lock["data"]
    for _ in range(_ATTEMPTS):
        record, etag = _read(s3, bucket)
        now = time.time()
        deployed = record.get("deployed")
        if deployed and _key(deployed) > _key(mine):
            reason = (
                f"data {mine['id']} ({mine['time']}) is older than {deployed['id']} ({deployed['time']}), "
                f"deployed by run {deployed['run']}: nothing deployed"
            )
            logger.info("run superseded", extra={"deployed": deployed, "data": mine})
            return {**state, "lock": {**lock, "status": SUPERSEDED, "reason": reason, "superseded_by": deployed}}
        holder = record.get("holder")
        held = bool(holder and holder != run and float(record.get("expires", 0)) > now)
        newer = None if held or holder == run else _waiting_newer(record, run, mine, now)
        if held or newer:
            noted = _as_waiting(record, run, mine, now)
            if noted is not None and not _swap(s3, bucket, noted, etag):
                continue  # the lock changed meanwhile: look again
            waited_for = holder if held else newer
            since = record.get("acquired", 0) if held else now
            return {**state, "lock": {**lock, "status": IN_PROGRESS, "holder": waited_for, "holder_since": since}}
        if holder and holder != run:
            logger.warning(
                "lease expired: taking over the lock", extra={"holder": holder, "expired": record["expires"]}
            )
        waiting = {other: entry for other, entry in (record.get("waiting") or {}).items() if other != run}
        taken: _Record = {
            **record,
            "holder": run,
            "acquired": now,
            "expires": now + lease,
            "data": mine,
            "waiting": waiting,
        }
        if _swap(s3, bucket, taken, etag):
            logger.info("deployment lock acquired", extra={"data": mine, "expires": taken["expires"]})
            return {**state, "lock": {**lock, "status": SUCCEEDED, "holder": run, "holder_since": now}}
    raise _contended()


@step
def acquire_lock(state: RunState) -> RunState:
    """Try to take the environment's deployment lock; waiting starts the lock's wait loop."""
    started: RunState = loop_started(state, "lock", settings.current().runs.lock_wait_seconds, data=data_version(state))
    return _attempt(started)


@step
def check_lock(state: RunState) -> RunState:
    """Try again; past ``lock_wait_seconds`` the run fails, naming the run that holds the lock."""
    attempt = _attempt(state)
    lock = attempt["lock"]
    lock["polls"] = int(state["lock"].get("polls", 0)) + 1
    if lock["status"] == IN_PROGRESS and past(lock["deadline"]):
        since = float(lock.get("holder_since", 0))
        raise LockWaitTimedOut(
            f"waited {settings.current().runs.lock_wait_seconds} s (runs.lock_wait_seconds) for the deployment "
            f"lock; run {lock.get('holder')} holds it since {iso_utc(since)}"
        )
    return attempt


def renew(state: RunState) -> None:
    """Extend this run's lease (called by every locked step); :class:`LockLost` if another run took it.

    The lease is rewritten unless it was a minute ago (:data:`RENEW_AFTER_SECONDS`), so every
    locked step starts with nearly a whole lease and concurrent batches of one run rarely race
    each other for it. A state without a ``lock`` section (a step called on its own, as the
    handler tests do) has nothing to renew: the state machine always takes the lock first.
    """
    if "lock" not in state:
        return
    s3, bucket, run = clients.s3(), settings.env(settings.ARTIFACTS_BUCKET), run_name(state)
    lease = settings.current().runs.lock_lease_seconds
    for _ in range(_ATTEMPTS):
        record, etag = _read(s3, bucket)
        now = time.time()
        if record.get("holder") != run:
            raise LockLost(
                f"the deployment lock is held by {record.get('holder') or 'no run'}: this run's lease "
                f"(runs.lock_lease_seconds = {lease}) ran out between two of its steps; nothing more is deployed"
            )
        if float(record.get("expires", 0)) - now > lease - RENEW_AFTER_SECONDS:
            return
        if _swap(s3, bucket, {**record, "expires": now + lease}, etag):
            return
    raise _contended()


def _deployed_anywhere(state: RunState) -> bool:
    return any(d.get("status") == SUCCEEDED for d in state.get("deployment", {}).get("devices", []))


@step
def release_lock(state: RunState) -> RunState:
    """Free the lock if this run holds it; a run that deployed anywhere becomes the ``deployed`` data."""
    s3, bucket, run = clients.s3(), settings.env(settings.ARTIFACTS_BUCKET), run_name(state)
    lock = cast(LockSection, dict(state.get("lock") or {}))
    for _ in range(_ATTEMPTS):
        record, etag = _read(s3, bucket)
        if record.get("holder") != run:
            logger.info("lock not held by this run: nothing to release", extra={"holder": record.get("holder")})
            return {**state, "lock": {**lock, "status": RELEASED}} if lock else state
        freed: _Record = {**record, "holder": None, "expires": 0}
        mine = lock.get("data")
        deployed = record.get("deployed")
        if mine and _deployed_anywhere(state) and (not deployed or _key(mine) >= _key(deployed)):
            freed["deployed"] = {"run": run, "time": mine["time"], "id": mine["id"]}
        if _swap(s3, bucket, freed, etag):
            logger.info("deployment lock released", extra={"deployed": freed.get("deployed")})
            return {**state, "lock": {**lock, "status": RELEASED}}
    raise _contended()
