"""One reading of "no such job" for both SageMaker job kinds: what the model declares and what the service answers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from lambda_handlers.aws import clients
from lambda_handlers.errors import CompilationFailed, TrainingFailed
from lambda_handlers.sagemaker_jobs import COMPILATION_JOB, TRAINING_JOB, JobKind, poll
from tests.handlers.conftest import REGION

KINDS = pytest.mark.parametrize("kind", [TRAINING_JOB, COMPILATION_JOB], ids=lambda k: k.section)


@pytest.fixture
def stubbed(aws: None) -> Iterator[Stubber]:
    """The handlers' SageMaker client, answered by a Stubber on the real service model."""
    client = boto3.client("sagemaker", region_name=REGION)
    with Stubber(client) as stub:
        clients._clients["sagemaker"] = client
        yield stub
        stub.assert_no_pending_responses()


@KINDS
def test_an_unknown_name_as_the_service_answers_it_today_is_not_found(aws: None, kind: JobKind) -> None:
    assert kind.find("never-ran") is None  # moto, like SageMaker, answers ValidationException


@KINDS
@pytest.mark.parametrize("code", ["ResourceNotFound", "ValidationException"])
def test_both_not_found_codes_read_as_not_found(stubbed: Stubber, kind: JobKind, code: str) -> None:
    stubbed.add_client_error(f"describe_{kind.api}", code, "Requested resource not found.", 400)
    assert kind.find("gone") is None


@KINDS
def test_other_errors_are_not_read_as_not_found(stubbed: Stubber, kind: JobKind) -> None:
    stubbed.add_client_error(f"describe_{kind.api}", "AccessDeniedException", "no", 400)
    with pytest.raises(ClientError, match="AccessDeniedException"):
        kind.find("mine")


@pytest.mark.parametrize(("kind", "error"), [(TRAINING_JOB, TrainingFailed), (COMPILATION_JOB, CompilationFailed)])
def test_a_polled_job_that_vanished_fails_the_step(stubbed: Stubber, kind: JobKind, error: type[Exception]) -> None:
    stubbed.add_client_error(f"describe_{kind.api}", "ResourceNotFound", "Requested resource not found.", 400)
    state: Any = {kind.section: {"job_name": "panopipe-dev-x-run", "deadline": 2**40, "polls": 0}}
    with pytest.raises(error, match="panopipe-dev-x-run no longer exists"):
        poll(kind, state, 60)
