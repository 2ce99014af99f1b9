"""Shared fixtures for handler tests: a moto account, fresh shared clients, handler settings.

Generic on purpose: every handler test module may use these. Module-specific data (buckets,
jobs, inputs) belongs in the test module itself.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from lambda_handlers.aws import clients, panorama
from lambda_handlers.settings import (
    Compilation,
    Device,
    Metric,
    Model,
    Settings,
    Timing,
    Training,
    use_settings,
)

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
    with mock_aws():
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


def make_settings(**overrides: object) -> Settings:
    """Handler settings like config/dev.yaml's (built-in image classification, Jetson Xavier)."""
    values: dict[str, object] = {
        "prefix": "panopipe-dev",
        "model": Model(
            name="people_classifier",
            task="image_classification",
            framework="MXNET",
            framework_version="1.8",
            input_name="data",
            input_shape=(1, 3, 224, 224),
            classes=("empty", "person"),
        ),
        "training": Training(
            mode="builtin",
            instance_type="ml.g4dn.xlarge",
            instance_count=1,
            volume_size_gb=50,
            spot=True,
            max_runtime_seconds=3600,
            max_wait_seconds=7200,
            hyperparameters={"num_classes": "2", "num_training_samples": "400", "epochs": "10"},
            metric=Metric(name="validation:accuracy", threshold=0.8),
        ),
        "compilation": Compilation(max_runtime_seconds=900, target_device="jetson_xavier"),
        "devices": (Device(name="local-device-1"),),
        "timing": Timing(poll_seconds=1),
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
def settings() -> Iterator[Settings]:
    """:func:`make_settings` installed for the handlers; replace with ``use_settings`` in a test."""
    value = make_settings()
    use_settings(value)
    yield value
    use_settings(None)


@pytest.fixture
def stub() -> Iterator[Stubber]:
    """The shared Panorama client, wrapped in a Stubber on the carried API model (no call left unused)."""
    client = panorama.new_client("us-east-1")
    with Stubber(client) as stubber:
        panorama.use_client(client)
        yield stubber
        stubber.assert_no_pending_responses()
    panorama.use_client(None)
