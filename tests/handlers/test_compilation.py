"""Neo compilation steps against moto's SageMaker: the request for each target, idempotency, polling."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from lambda_handlers import compilation, names
from lambda_handlers.aws import clients
from lambda_handlers.errors import CompilationFailed, StepTimedOut
from lambda_handlers.settings import (
    ARTIFACTS_BUCKET,
    ARTIFACTS_KEY_ARN,
    SAGEMAKER_ROLE_ARN,
    MissingSetting,
    StepSettings,
    install,
)
from lambda_handlers.state import IN_PROGRESS, SUCCEEDED
from tests.handlers.conftest import REGION, make_settings, sagemaker_backend

ARTIFACTS = "aws-panorama-panopipe-dev-artifacts-123456789012-us-east-1"
KEY_ARN = "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555"
ROLE_ARN = "arn:aws:iam::123456789012:role/panopipe-dev-sagemaker-execution"
RUN = "ds-d1-0123456789ab"
JOB = names.job_name("panopipe-dev", "neo", RUN)
MODEL_URI = f"s3://{ARTIFACTS}/runs/{RUN}/training/panopipe-dev-train-{RUN}/output/model.tar.gz"
OUTPUT = f"s3://{ARTIFACTS}/runs/{RUN}/compilation/"
PLATFORM = {"Os": "LINUX", "Arch": "ARM64", "Accelerator": "NVIDIA"}
OPTIONS = {"gpu-code": "sm_72", "trt-ver": "7.1.3", "cuda-ver": "10.2"}


def model_state(**model: Any) -> dict[str, Any]:
    return {
        "input": {"dataset": "s3://aws-panorama-panopipe-dev-data-123456789012-us-east-1/datasets/d1/"},
        "run": {"name": RUN, "started": "2026-11-30T10:00:00Z"},
        "training": {"job_name": f"panopipe-dev-train-{RUN}", "status": SUCCEEDED},
        "model": {
            "s3_uri": MODEL_URI,
            "framework": "MXNET",
            "framework_version": "1.8",
            "input_name": "data",
            "input_shape": [1, 3, 224, 224],
            **model,
        },
    }


@pytest.fixture
def sagemaker(aws: None, settings: StepSettings, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv(ARTIFACTS_BUCKET, ARTIFACTS)
    monkeypatch.setenv(ARTIFACTS_KEY_ARN, KEY_ARN)
    monkeypatch.setenv(SAGEMAKER_ROLE_ARN, ROLE_ARN)
    return clients.sagemaker()


def started(state: dict[str, Any] | None = None) -> Any:
    return compilation.start_compilation(state or model_state())


def set_job(**attributes: Any) -> None:
    """Give moto's job another status or reason (moto makes every compilation job COMPLETED at once)."""
    job = sagemaker_backend().compilation_jobs[JOB]
    for name, value in attributes.items():
        setattr(job, name, value)


# --- start ---------------------------------------------------------------------------------------


def test_start_compiles_the_raw_model_for_the_jetson_xavier(sagemaker: Any) -> None:
    before = time.time()
    state = started()

    section = state["compilation"]
    assert section == {"job_name": JOB, "status": IN_PROGRESS, "deadline": section["deadline"], "polls": 0}
    assert before - 1 + 1800 <= section["deadline"] <= time.time() + 1800
    assert state["model"] == model_state()["model"]
    job = sagemaker.describe_compilation_job(CompilationJobName=JOB)
    assert job["RoleArn"] == ROLE_ARN
    assert job["InputConfig"] == {
        "S3Uri": MODEL_URI,
        "DataInputConfig": '{"data":[1,3,224,224]}',
        "Framework": "MXNET",
        "FrameworkVersion": "1.8",
    }
    assert job["OutputConfig"] == {"S3OutputLocation": OUTPUT, "TargetDevice": "jetson_xavier", "KmsKeyId": KEY_ARN}
    assert job["StoppingCondition"] == {"MaxRuntimeInSeconds": 900}


def test_start_with_a_target_platform_passes_the_compiler_options(sagemaker: Any) -> None:
    install(
        make_settings({"compilation": {"target_platform": {"compiler_options": OPTIONS}, "max_runtime_seconds": 1200}})
    )
    started(model_state(framework="PYTORCH", framework_version="1.8", input_shape=[1, 3, 512, 512]))

    job = sagemaker.describe_compilation_job(CompilationJobName=JOB)
    output = job["OutputConfig"]
    assert "TargetDevice" not in output
    assert output["TargetPlatform"] == PLATFORM
    assert json.loads(output["CompilerOptions"]) == OPTIONS
    assert output["S3OutputLocation"] == OUTPUT and output["KmsKeyId"] == KEY_ARN
    assert job["InputConfig"]["Framework"] == "PYTORCH"
    assert json.loads(job["InputConfig"]["DataInputConfig"]) == {"data": [1, 3, 512, 512]}
    assert job["StoppingCondition"] == {"MaxRuntimeInSeconds": 1200}


def test_start_without_a_target_is_a_deployment_fault(sagemaker: Any, settings: StepSettings) -> None:
    # The config refuses this; settings parsed from a stale or hand-edited STEP_SETTINGS could still say it.
    install(replace(settings, compilation=replace(settings.compilation, target_device=None, target_platform=None)))

    with pytest.raises(MissingSetting, match="target_device or a target_platform"):
        started()


def test_a_retried_start_adopts_the_job_instead_of_starting_another(sagemaker: Any) -> None:
    first = started()
    job = sagemaker_backend().compilation_jobs[JOB]
    job.compilation_job_status = "INPROGRESS"

    second = started()  # moto answers the second create with ResourceInUse, as SageMaker does

    assert second["compilation"]["job_name"] == first["compilation"]["job_name"] == JOB
    assert abs(second["compilation"]["deadline"] - first["compilation"]["deadline"]) <= 1  # from the job's creation
    assert sagemaker_backend().compilation_jobs[JOB] is job
    assert [s["CompilationJobName"] for s in sagemaker.list_compilation_jobs()["CompilationJobSummaries"]] == [JOB]


# --- check ---------------------------------------------------------------------------------------


def test_check_polls_until_completed_then_records_the_output(sagemaker: Any) -> None:
    state = started()
    for status in ("STARTING", "INPROGRESS"):
        set_job(compilation_job_status=status)
        state = compilation.check_compilation(state)
        assert state["compilation"]["status"] == IN_PROGRESS
        assert "output_uri" not in state["compilation"]
    assert state["compilation"]["polls"] == 2

    set_job(
        compilation_job_status="COMPLETED", model_artifacts={"S3ModelArtifacts": f"{OUTPUT}model-jetson_xavier.tar.gz"}
    )
    state = compilation.check_compilation(state)

    assert state["compilation"]["status"] == SUCCEEDED
    assert state["compilation"]["polls"] == 3
    assert state["compilation"]["output_uri"] == f"{OUTPUT}model-jetson_xavier.tar.gz"
    assert state["model"]["s3_uri"] == MODEL_URI  # the raw model is what Panorama packages


def test_a_failed_job_raises_its_failure_reason_verbatim(sagemaker: Any) -> None:
    state = started()
    reason = (
        "ClientError: InputConfiguration: Unable to load the model. Please make sure the input "
        'shape {"data": [1, 3, 224, 224]} matches the model and the framework version is 1.8.'
    )
    set_job(compilation_job_status="FAILED", failure_reason=reason)

    with pytest.raises(CompilationFailed) as caught:
        compilation.check_compilation(state)
    assert str(caught.value) == f"compilation job {JOB} failed: {reason}"


def test_a_stopped_job_fails_the_step(sagemaker: Any) -> None:
    state = started()
    set_job(compilation_job_status="STOPPED", failure_reason="")

    with pytest.raises(CompilationFailed, match=f"^compilation job {JOB} was stopped: no FailureReason given$"):
        compilation.check_compilation(state)


@pytest.fixture
def stop_stub(sagemaker: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stubber]:
    """StopCompilationJob through a Stubber: moto 5.2.5 does not implement it (NotImplementedError)."""
    other = boto3.client("sagemaker", region_name=REGION)
    with Stubber(other) as stub:
        monkeypatch.setattr(sagemaker, "stop_compilation_job", other.stop_compilation_job)
        yield stub


def test_timeout_stops_the_job_and_fails_the_step(sagemaker: Any, stop_stub: Stubber) -> None:
    state = started()
    set_job(compilation_job_status="INPROGRESS")
    state["compilation"]["deadline"] = int(time.time()) - 1
    stop_stub.add_response("stop_compilation_job", {}, {"CompilationJobName": JOB})

    with pytest.raises(StepTimedOut) as caught:
        compilation.check_compilation(state)

    assert str(caught.value) == f"compilation job {JOB} still INPROGRESS after the 1800 s timeout; stopped it"
    stop_stub.assert_no_pending_responses()


def test_timeout_while_stopping_does_not_stop_again(sagemaker: Any, stop_stub: Stubber) -> None:
    state = started()
    set_job(compilation_job_status="STOPPING")
    state["compilation"]["deadline"] = int(time.time()) - 1

    with pytest.raises(StepTimedOut, match=r"still STOPPING .* it is already stopping$"):
        compilation.check_compilation(state)  # a stop call would fail: the Stubber has no response queued


def test_completion_wins_over_a_passed_deadline(sagemaker: Any) -> None:
    state = started()
    state["compilation"]["deadline"] = 0

    assert compilation.check_compilation(state)["compilation"]["status"] == SUCCEEDED


def test_timeout_is_reported_even_when_the_stop_is_refused(sagemaker: Any, stop_stub: Stubber) -> None:
    """The job may finish between Describe and Stop: the timeout, not the refused stop, is the news."""
    state = started()
    set_job(compilation_job_status="INPROGRESS")
    state["compilation"]["deadline"] = int(time.time()) - 1
    stop_stub.add_client_error("stop_compilation_job", "ValidationException", "job is not in progress")

    with pytest.raises(StepTimedOut, match="could not stop it \\(ValidationException\\)"):
        compilation.check_compilation(state)
