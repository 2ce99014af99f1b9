"""S3 conditional writes as S3 makes them: the check and the write are one step (moto races).

**Atomic.** moto 5.2.5's S3 checks ``If-None-Match: *`` and ``If-Match`` (PutObject, DeleteObject,
CompleteMultipartUpload) and then writes, holding nothing in between. On the emulator's threaded
server, concurrent conditional writes to one key could all pass the check and all succeed, where S3
lets exactly one through and answers the others 412 PreconditionFailed (or 409
ConditionalRequestConflict). The pipeline's per-environment deployment lock (an object created with
``If-None-Match: *``, taken over, renewed and released with ``If-Match: <etag>``) would then look
safe locally while two runs both hold it. Every write of an object (PutObject, CopyObject to it,
DeleteObject, CompleteMultipartUpload) now holds a lock of its bucket and key from its check to its
answer: writes to one key, conditional or not, happen one after the other; writes to other keys,
reads and part uploads wait for nothing. (This also ends moto's HTTP 500 for two plain puts of one
key at once: the second closed the first's data while the first still computed its ETag.)

**The conditions AWS supports on general purpose buckets, where moto ignores or misreads them:**
CopyObject's ``If-None-Match: *`` and ``If-Match`` on the destination (moto copied over anything),
CompleteMultipartUpload's ``If-Match`` (ignored), DeleteObject's ``If-Match: *`` ("any ETag": moto
compared ``*`` with the ETag and refused every such delete). As in S3, a condition that fails is 412
PreconditionFailed and ``If-Match`` on a missing object (or a delete marker) 404 NoSuchKey. Not
covered: DeleteObjects' per-object ETag (moto ignores it).

moto invokes a bucket's *Lambda* notifications synchronously, inside the write: a function so
triggered that writes the very key that triggered it waits for the key's lock until its timeout.
The pipeline's notifications go through EventBridge, which ``moto_eventbridge`` delivers asynchronously.

The emulator installs :func:`replacements` (``moto_patches``); in-process tests under moto's
``mock_aws`` get the same conditions with :func:`conditional_writes_as_in_s3`.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass
class _Entry:
    lock: threading.Lock = field(default_factory=threading.Lock)
    users: int = 0


class KeyLocks:
    """One lock per (bucket, key), kept only while a request holds it or waits for it."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._entries: dict[tuple[str, str], _Entry] = {}

    @contextlib.contextmanager
    def hold(self, bucket: str, key: str) -> Iterator[None]:
        """Hold the lock of ``bucket``/``key`` for the ``with`` block."""
        name = (bucket, key)
        with self._guard:
            entry = self._entries.get(name)
            if entry is None:
                entry = self._entries[name] = _Entry()
            entry.users += 1
        try:
            with entry.lock:
                yield
        finally:
            with self._guard:
                entry.users -= 1
                if not entry.users:
                    del self._entries[name]

    def __len__(self) -> int:
        """How many keys are held or waited for now."""
        with self._guard:
            return len(self._entries)


#: The locks of every S3 object write in this process.
KEY_LOCKS = KeyLocks()


def _same_etag(condition: str, etag: str) -> bool:
    """S3 compares ETags with or without their quotes (as moto does for PutObject)."""
    return condition.replace('"', "") == etag.replace('"', "")


def _check(response: Any, key_name: str, *, if_none_match: bool) -> None:
    """Raise what S3 answers when the request's ``If-Match`` (and ``If-None-Match: *``) fails."""
    from moto.s3.exceptions import MissingKey, PreconditionFailed

    if_match = response.headers.get("If-Match")
    current = response.backend.get_object(response.bucket_name, key_name)
    if if_match:
        if current is None:
            raise MissingKey(key=key_name)
        if not _same_etag(if_match, current.etag):
            raise PreconditionFailed("If-Match")
    if if_none_match and response.headers.get("If-None-Match") == "*" and current is not None:
        raise PreconditionFailed("If-None-Match")


def _put_object(original: Callable[..., Any]) -> Callable[..., Any]:
    def put_object(self: Any) -> Any:
        with KEY_LOCKS.hold(self.bucket_name, self.parse_key_name()):
            return original(self)  # moto's own checks, now under the key's lock

    return put_object


def _copy_object(original: Callable[..., Any]) -> Callable[..., Any]:
    def copy_object(self: Any) -> Any:
        key_name = self.parse_key_name()
        with KEY_LOCKS.hold(self.bucket_name, key_name):
            _check(self, key_name, if_none_match=True)  # the destination's conditions (moto has none)
            return original(self)

    return copy_object


def _delete_object(original: Callable[..., Any]) -> Callable[..., Any]:
    def delete_object(self: Any) -> Any:
        key_name = self.parse_key_name()
        with KEY_LOCKS.hold(self.bucket_name, key_name):
            if self.headers.get("If-Match") == "*":  # any ETag: the object must exist, nothing more
                from moto.s3.exceptions import MissingKey
                from werkzeug.datastructures import Headers

                if self.backend.get_object(self.bucket_name, key_name) is None:
                    raise MissingKey(key=key_name)
                headers = Headers(list(self.headers.items()))
                headers.remove("If-Match")
                self.headers = headers
            return original(self)

    return delete_object


def _key_response_post(original: Callable[..., Any]) -> Callable[..., Any]:
    def key_response_post(self: Any, request: Any, body: bytes, bucket_name: str, query: Any, key_name: str) -> Any:
        upload = query.get("uploadId")
        if not upload:  # not CompleteMultipartUpload
            return original(self, request, body, bucket_name, query, key_name)
        with KEY_LOCKS.hold(self.bucket_name, key_name):
            current = self.backend.get_object(self.bucket_name, key_name)
            repeated = current is not None and current.multipart is not None and current.multipart.id == upload[0]
            if not repeated:  # moto answers a repeated completion with the object it made
                _check(self, key_name, if_none_match=False)  # moto checks If-None-Match itself
            return original(self, request, body, bucket_name, query, key_name)

    return key_response_post


def replacements() -> list[tuple[object, str, Callable[[Any], Any]]]:
    """(owner, attribute, make(original) -> replacement) for S3's object writes."""
    from moto.s3.responses import S3Response

    return [
        (S3Response, "put_object", _put_object),
        (S3Response, "copy_object", _copy_object),
        (S3Response, "delete_object", _delete_object),
        (S3Response, "_key_response_post", _key_response_post),
    ]


@contextlib.contextmanager
def conditional_writes_as_in_s3() -> Iterator[None]:
    """While open, moto (e.g. under ``mock_aws``) honours S3's conditional writes as the emulator does.

    Patches moto's S3 response class in this process and puts the originals back on exit::

        with mock_aws(), conditional_writes_as_in_s3():
            s3.copy_object(Bucket="b", Key="lock", CopySource="b/other", IfNoneMatch="*")  # 412 if "lock" exists
    """
    undo: list[tuple[object, str, Any]] = []
    try:
        for owner, name, make in replacements():
            undo.append((owner, name, vars(owner)[name]))
            setattr(owner, name, make(getattr(owner, name)))
        yield
    finally:
        for owner, name, original in reversed(undo):
            setattr(owner, name, original)
