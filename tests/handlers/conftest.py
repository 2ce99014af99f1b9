"""Shared fixtures for handler tests: a moto account, fresh shared clients, handler settings.

Generic on purpose: every handler test module may use these. Module-specific data (buckets,
jobs, inputs) belongs in the test module itself.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from lambda_handlers.aws import clients, panorama
from lambda_handlers.settings import StepSettings, install, parse
from local_aws.sagemaker_job_requests import refuse_what_sagemaker_refuses
from panopipe.config import load_config
from panopipe.config.step_settings import step_settings_json
from tests.conftest import ROOT

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account


_session: boto3.Session | None = None


def _shared_session() -> boto3.Session:
    """One boto3 session for all handler tests, so service models are parsed once, not per test.

    moto resets ``boto3.DEFAULT_SESSION`` on entry; a fresh session re-reads every model (SageMaker's
    alone takes ~0.1 s), which made each test several times slower. Created inside the first moto
    context, it holds moto's fake credentials.
    """
    global _session
    if _session is None:
        _session = boto3.Session(region_name=REGION)
    return _session


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A moto account in :data:`REGION`; the handlers' shared clients are created inside it."""
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    clients.reset()
    with mock_aws(), refuse_what_sagemaker_refuses():  # SageMaker answers ResourceInUse; plain moto replaces
        boto3.DEFAULT_SESSION = _shared_session()  # moto restores its own value on exit
        yield
    clients.reset()


def sagemaker_backend() -> Any:
    """moto's SageMaker state (``training_jobs``, ``compilation_jobs``): tests set job statuses here.

    moto 5.2.5 makes every job Completed/COMPLETED at once; InProgress, Failed and Stopped are set
    on its job objects (``training_job_status``, ``compilation_job_status``, ``failure_reason``)
    rather than written as hand-made responses.
    """
    from moto.sagemaker.models import sagemaker_backends

    return sagemaker_backends[ACCOUNT][REGION]


def refuse_next_training_job(sagemaker: Any, monkeypatch: pytest.MonkeyPatch, code: str, message: str) -> Stubber:
    """Refuse the next CreateTrainingJob of ``sagemaker`` with ``code`` (a refusal moto has no reason to make).

    Any further create fails the test; call ``assert_no_pending_responses`` on the result.
    """
    other = boto3.client("sagemaker", region_name=REGION)
    stub = Stubber(other)
    stub.add_client_error("create_training_job", code, message, 400)
    stub.activate()
    monkeypatch.setattr(sagemaker, "create_training_job", other.create_training_job)
    return stub


def make_settings(overrides: Mapping[str, Any] | None = None, config: str = "config/dev.yaml") -> StepSettings:
    """The settings a deployed function gets for ``config`` (dev: built-in image classification, Jetson
    Xavier, one device by name), with dotted config overrides, through the real serializer and parser."""
    values = {"runs.poll_seconds": 1, **(overrides or {})}
    loaded = load_config(ROOT / config, base_dir=ROOT, overrides=values)
    return parse(StepSettings, json.loads(step_settings_json(loaded)))


@pytest.fixture
def settings() -> Iterator[StepSettings]:
    """:func:`make_settings` installed for the handlers; replace with ``install`` in a test."""
    value = make_settings()
    install(value)
    yield value
    install(None)


@pytest.fixture
def stub() -> Iterator[Stubber]:
    """The shared Panorama client, wrapped in a Stubber on the carried API model (no call left unused)."""
    client = panorama.new_client("us-east-1")
    with Stubber(client) as stubber:
        panorama.use_client(client)
        yield stubber
        stubber.assert_no_pending_responses()
    panorama.use_client(None)


def recordio(*payloads: bytes, split: bool = False) -> bytes:
    """MXNet RecordIO bytes of ``payloads``; ``split`` writes each as a first and a last part."""
    import struct

    def record(flag: int, data: bytes) -> bytes:
        return struct.pack("<II", 0xCED7230A, (flag << 29) | len(data)) + data + b"\0" * (-len(data) % 4)

    if split:
        return b"".join(record(1, p[: len(p) // 2]) + record(3, p[len(p) // 2 :]) for p in payloads)
    return b"".join(record(0, p) for p in payloads)


def manifest_lines(*sources: str, label: str = "class") -> bytes:
    """A Ground Truth augmented manifest: one JSON object per line."""
    return b"".join(
        json.dumps({"source-ref": source, label: index % 2}).encode() + b"\n" for index, source in enumerate(sources)
    )
