"""Where the local Panorama service reads package objects: a plain bucket of the emulator's S3.

The real service gives each package a storage location in an S3 access point it owns; the pipeline
uploads ``package.json``, descriptors and assets there and RegisterPackageVersion reads them back.
Locally the location is ``panorama-local-storage-<account>-<region>`` in moto's S3 of the same
process (the service is mounted on moto's server), so uploads through the emulator's S3 endpoint are
what registration checks. The bucket is created on first use, and again after an emulator reset.
"""

from __future__ import annotations

from typing import Any


class MotoS3Store:
    """moto's S3 of this process: the emulator's S3."""

    def __init__(self, account_id: str, partition: str = "aws") -> None:
        self.account_id, self.partition = account_id, partition

    def _backend(self) -> Any:
        from moto.s3.models import s3_backends

        return s3_backends[self.account_id][self.partition]

    def ensure_bucket(self, bucket: str, region: str) -> None:
        """Create ``bucket`` in moto unless this account has it."""
        backend = self._backend()
        if bucket not in backend.buckets:
            backend.create_bucket(bucket, region)

    def read(self, bucket: str, key: str) -> bytes | None:
        """The object's bytes, or None when there is no such object (or bucket)."""
        from moto.s3.exceptions import MissingBucket

        try:
            found = self._backend().get_object(bucket, key)
        except MissingBucket:
            return None
        return None if found is None else bytes(found.value)
