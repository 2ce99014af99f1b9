"""Step 4: the Neo compatibility gate: compile the raw model for the appliance and wait for it.

Panorama recompiles the raw model itself at deploy time, so this job only proves early that it
compiles for the Jetson AGX Xavier (a named TargetDevice, or a TargetPlatform with CompilerOptions).
Neo has no waiter and no Step Functions integration: the state machine polls ``check_compilation``.
The job name derives from the run name, so a retried step that SageMaker answers ResourceInUse
adopts the job it already started.
"""

from __future__ import annotations

import json
from typing import Any

from lambda_handlers import names, settings
from lambda_handlers.sagemaker_jobs import COMPILATION_JOB, poll
from lambda_handlers.settings import MissingSetting, StepSettings
from lambda_handlers.state import IN_PROGRESS, SUCCEEDED, RunState, loop_started, polled, run_name
from lambda_handlers.step import step


def compilation_job_name(config: StepSettings, run: str) -> str:
    """The one Neo compilation job name of a run."""
    return names.job_name(config.prefix, "neo", run)


def compilation_request(
    config: StepSettings, state: RunState, *, role_arn: str, bucket: str, key_arn: str
) -> dict[str, Any]:
    """The CreateCompilationJob parameters for this run's model (pure: no AWS call)."""
    run = run_name(state)
    model = state["model"]
    target = config.compilation
    output: dict[str, Any] = {"S3OutputLocation": f"s3://{bucket}/runs/{run}/compilation/", "KmsKeyId": key_arn}
    if target.target_device:
        output["TargetDevice"] = target.target_device
    elif target.target_platform:
        platform = target.target_platform
        output["TargetPlatform"] = {"Os": platform.os, "Arch": platform.arch, "Accelerator": platform.accelerator}
        if platform.compiler_options:
            output["CompilerOptions"] = json.dumps(platform.compiler_options, separators=(",", ":"), sort_keys=True)
    else:
        raise MissingSetting("compilation needs a target_device or a target_platform; redeploy the pipeline stack")
    return {
        "CompilationJobName": compilation_job_name(config, run),
        "RoleArn": role_arn,
        "InputConfig": {
            "S3Uri": model["s3_uri"],
            "DataInputConfig": json.dumps({model["input_name"]: list(model["input_shape"])}, separators=(",", ":")),
            "Framework": model["framework"],
            "FrameworkVersion": model["framework_version"],
        },
        "OutputConfig": output,
        "StoppingCondition": {"MaxRuntimeInSeconds": target.max_runtime_seconds},
    }


@step
def start_compilation(state: RunState) -> RunState:
    """Start this run's compilation job, or adopt it if a previous attempt of this step started it."""
    config = settings.current()
    request = compilation_request(
        config,
        state,
        role_arn=settings.env(settings.SAGEMAKER_ROLE_ARN),
        bucket=settings.env(settings.ARTIFACTS_BUCKET),
        key_arn=settings.env(settings.ARTIFACTS_KEY_ARN),
    )
    created = COMPILATION_JOB.start(request)
    timeout = config.runs.compilation_timeout_seconds
    return loop_started(state, "compilation", timeout, since=created, job_name=request["CompilationJobName"])


@step
def check_compilation(state: RunState) -> RunState:
    """Poll the job: IN_PROGRESS, SUCCEEDED (+ ``output_uri``), or raise CompilationFailed / StepTimedOut."""
    done, job = poll(COMPILATION_JOB, state, settings.current().runs.compilation_timeout_seconds)
    if not done:
        return polled(state, "compilation", IN_PROGRESS)
    return polled(state, "compilation", SUCCEEDED, output_uri=job["ModelArtifacts"]["S3ModelArtifacts"])
