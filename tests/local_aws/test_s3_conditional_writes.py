"""S3 conditional writes: of concurrent conditional writes to one key exactly one succeeds in the
local AWS (``moto_s3_conditional``), as in S3; the conditions moto ignored; what in-process moto
(``mock_aws``, the handler tests') answers.

The races are made certain rather than likely: ``slow_writes`` makes moto's backend take a while
to store or delete an object (as a big object would), so without the key's lock every racing request
passes its check while the others are still writing, and several succeed.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from moto import mock_aws

from local_aws import moto_s3_conditional
from local_aws.emulator import Emulator
from local_aws.moto_s3_conditional import conditional_writes_as_in_s3

#: Concurrent requests per race, and races per test.
N = 16
ROUNDS = 3
#: How much longer each of moto's object writes takes under ``slow_writes``.
SLOW_WRITE = 0.02
BUCKET = "conditional-writes"
REFUSED = "412 PreconditionFailed"
MISSING = "404 NoSuchKey"
CREDENTIALS = {"region_name": "us-east-1", "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def outcome(call: Callable[[], Any]) -> str:
    """``OK``, or ``"<HTTP status> <error code>"`` of the ClientError."""
    try:
        call()
    except ClientError as error:
        return f"{error.response['ResponseMetadata']['HTTPStatusCode']} {error.response['Error']['Code']}"
    return "OK"


def race(calls: Sequence[Callable[[], Any]]) -> list[str]:
    """Each call's :func:`outcome`, all released at once."""
    barrier = threading.Barrier(len(calls))

    def run(call: Callable[[], Any]) -> str:
        barrier.wait()
        return outcome(call)

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def winner(outcomes: list[str], failure: str) -> int:
    """The index of the one success; every other outcome must be ``failure``."""
    assert Counter(outcomes) == {"OK": 1, failure: len(outcomes) - 1}, outcomes
    return outcomes.index("OK")


# --------------------------------------------------------------------------------------------------
# In-process moto (mock_aws), single-threaded: what the handler tests see
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def mocked_s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    with mock_aws():
        client = boto3.client("s3", **CREDENTIALS)
        client.create_bucket(Bucket=BUCKET)
        yield client


def test_mock_aws_refuses_failed_put_conditions_as_s3_does(mocked_s3: Any) -> None:
    s3 = mocked_s3
    etag = s3.put_object(Bucket=BUCKET, Key="lock", Body=b"v1", IfNoneMatch="*")["ETag"]
    assert outcome(lambda: s3.put_object(Bucket=BUCKET, Key="lock", Body=b"v2", IfNoneMatch="*")) == REFUSED
    assert outcome(lambda: s3.put_object(Bucket=BUCKET, Key="lock", Body=b"v2", IfMatch='"0123"')) == REFUSED
    assert outcome(lambda: s3.put_object(Bucket=BUCKET, Key="absent", Body=b"v2", IfMatch=etag)) == MISSING
    with pytest.raises(ClientError) as error:
        s3.put_object(Bucket=BUCKET, Key="lock", Body=b"v2", IfNoneMatch="*")
    assert error.value.response["Error"]["Code"] == "PreconditionFailed"
    assert error.value.response["Error"]["Condition"] == "If-None-Match"
    renewed = s3.put_object(Bucket=BUCKET, Key="lock", Body=b"v2", IfMatch=etag)["ETag"]
    assert outcome(lambda: s3.put_object(Bucket=BUCKET, Key="lock", Body=b"v3", IfMatch=etag)) == REFUSED
    assert outcome(lambda: s3.put_object(Bucket=BUCKET, Key="lock", Body=b"v3", IfMatch=renewed.strip('"'))) == "OK"


def test_mock_aws_gets_copy_conditions_only_with_conditional_writes_as_in_s3(mocked_s3: Any) -> None:
    s3 = mocked_s3
    s3.put_object(Bucket=BUCKET, Key="lock", Body=b"held")
    s3.put_object(Bucket=BUCKET, Key="other", Body=b"mine")

    def copy() -> Any:
        return s3.copy_object(Bucket=BUCKET, Key="lock", CopySource=f"{BUCKET}/other", IfNoneMatch="*")

    with conditional_writes_as_in_s3():
        assert outcome(copy) == REFUSED
    assert s3.get_object(Bucket=BUCKET, Key="lock")["Body"].read() == b"held"
    assert outcome(copy) == "OK", "moto copies over the key by itself: drop the patch once it does not"


# --------------------------------------------------------------------------------------------------
# The emulator: concurrent conditional writes to one key
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def aws() -> Iterator[Emulator]:
    with Emulator() as emulator:
        yield emulator


@pytest.fixture(scope="module")
def s3(aws: Emulator) -> Any:
    config = Config(max_pool_connections=N, retries={"max_attempts": 1})
    client = boto3.client("s3", endpoint_url=aws.endpoint, config=config, **CREDENTIALS)
    client.create_bucket(Bucket=BUCKET)
    return client


@pytest.fixture
def slow_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto's S3 backend sleeps SLOW_WRITE before each object it stores or deletes."""
    from moto.s3.models import S3Backend

    def slowed(original: Callable[..., Any]) -> Callable[..., Any]:
        def slow(self: Any, *args: Any, **kwargs: Any) -> Any:
            time.sleep(SLOW_WRITE)
            return original(self, *args, **kwargs)

        return slow

    for name in ("put_object", "delete_object"):
        monkeypatch.setattr(S3Backend, name, slowed(getattr(S3Backend, name)))


def body(s3: Any, key: str) -> bytes:
    data: bytes = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    return data


def writer(i: int, round_: int) -> bytes:
    return f"writer {i} of round {round_}".encode()


@pytest.mark.usefixtures("slow_writes")
def test_of_concurrent_creates_with_if_none_match_exactly_one_succeeds(s3: Any) -> None:
    for round_ in range(ROUNDS):
        key = f"create/lock-{round_}"
        creates = [
            partial(s3.put_object, Bucket=BUCKET, Key=key, Body=writer(i, round_), IfNoneMatch="*") for i in range(N)
        ]
        first = winner(race(creates), REFUSED)
        assert body(s3, key) == writer(first, round_)
    assert len(moto_s3_conditional.KEY_LOCKS) == 0


@pytest.mark.usefixtures("slow_writes")
def test_of_concurrent_updates_with_if_match_exactly_one_succeeds(s3: Any) -> None:
    for round_ in range(ROUNDS):
        key = f"update/lock-{round_}"
        etag = s3.put_object(Bucket=BUCKET, Key=key, Body=b"v1")["ETag"]
        take_overs = [
            partial(s3.put_object, Bucket=BUCKET, Key=key, Body=writer(i, round_), IfMatch=etag) for i in range(N)
        ]
        first = winner(race(take_overs), REFUSED)
        assert body(s3, key) == writer(first, round_)


@pytest.mark.usefixtures("slow_writes")
def test_of_concurrent_deletes_with_if_match_exactly_one_succeeds(s3: Any) -> None:
    for round_ in range(ROUNDS):
        key = f"delete/lock-{round_}"
        etag = s3.put_object(Bucket=BUCKET, Key=key, Body=b"v1")["ETag"]
        release = partial(s3.delete_object, Bucket=BUCKET, Key=key, IfMatch=etag)
        winner(race([release] * N), MISSING)  # the others find the object gone


@pytest.mark.usefixtures("slow_writes")
def test_of_concurrent_copies_and_completions_with_if_none_match_exactly_one_succeeds(s3: Any) -> None:
    s3.put_object(Bucket=BUCKET, Key="source", Body=b"copied")
    for round_ in range(ROUNDS):
        key = f"copy/lock-{round_}"
        copy = partial(s3.copy_object, Bucket=BUCKET, Key=key, CopySource=f"{BUCKET}/source", IfNoneMatch="*")
        winner(race([copy] * N), REFUSED)
        assert body(s3, key) == b"copied"

        key = f"multipart/lock-{round_}"
        completions: list[Callable[[], Any]] = []
        for i in range(N):
            upload = s3.create_multipart_upload(Bucket=BUCKET, Key=key)["UploadId"]
            part = s3.upload_part(Bucket=BUCKET, Key=key, UploadId=upload, PartNumber=1, Body=writer(i, round_))
            completions.append(
                partial(
                    s3.complete_multipart_upload,
                    Bucket=BUCKET,
                    Key=key,
                    UploadId=upload,
                    MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
                    IfNoneMatch="*",
                )
            )
        first = winner(race(completions), REFUSED)
        assert body(s3, key) == writer(first, round_)


@pytest.mark.usefixtures("slow_writes")
def test_concurrent_plain_puts_of_one_key_all_succeed(s3: Any) -> None:
    outcomes = race([partial(s3.put_object, Bucket=BUCKET, Key="plain", Body=writer(i, 0)) for i in range(N)])
    assert outcomes == ["OK"] * N
    assert body(s3, "plain") in {writer(i, 0) for i in range(N)}


def test_conditions_moto_ignored_are_checked(s3: Any) -> None:
    etag = s3.put_object(Bucket=BUCKET, Key="held", Body=b"held")["ETag"]
    s3.put_object(Bucket=BUCKET, Key="other", Body=b"other")
    source = f"{BUCKET}/other"
    assert outcome(lambda: s3.copy_object(Bucket=BUCKET, Key="held", CopySource=source, IfNoneMatch="*")) == REFUSED
    assert outcome(lambda: s3.copy_object(Bucket=BUCKET, Key="held", CopySource=source, IfMatch='"0123"')) == REFUSED
    assert outcome(lambda: s3.copy_object(Bucket=BUCKET, Key="nothing", CopySource=source, IfMatch=etag)) == MISSING
    assert body(s3, "held") == b"held"
    assert outcome(lambda: s3.copy_object(Bucket=BUCKET, Key="held", CopySource=source, IfMatch=etag)) == "OK"
    assert body(s3, "held") == b"other"

    upload = s3.create_multipart_upload(Bucket=BUCKET, Key="held")["UploadId"]
    part = s3.upload_part(Bucket=BUCKET, Key="held", UploadId=upload, PartNumber=1, Body=b"parts")
    parts = {"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]}

    def complete(if_match: str) -> Any:
        return s3.complete_multipart_upload(
            Bucket=BUCKET, Key="held", UploadId=upload, MultipartUpload=parts, IfMatch=if_match
        )

    assert outcome(lambda: complete(etag)) == REFUSED  # "held" was replaced by the copy
    current = s3.head_object(Bucket=BUCKET, Key="held")["ETag"]
    assert outcome(lambda: complete(current)) == "OK"
    assert outcome(lambda: complete(current)) == "OK"  # completing it again answers the same object
    assert body(s3, "held") == b"parts"

    assert outcome(lambda: s3.delete_object(Bucket=BUCKET, Key="held", IfMatch="*")) == "OK"  # "*": any ETag
    assert outcome(lambda: s3.delete_object(Bucket=BUCKET, Key="held", IfMatch="*")) == MISSING
    assert outcome(lambda: s3.delete_object(Bucket=BUCKET, Key="other", IfMatch='"0123"')) == REFUSED
