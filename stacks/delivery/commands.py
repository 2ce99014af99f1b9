"""The shell commands of the delivery pipeline's CodeBuild steps, written once.

They are the commands a developer runs (the README's test command, the Makefile's targets, the
``panopipe`` CLI), so a pipeline step fails exactly where a laptop would. A test holds
:data:`TEST_COMMAND` against the README.
"""

from __future__ import annotations

import shlex

#: The README's test command: ruff, mypy and the whole pytest suite.
TEST_COMMAND = "make test"
#: The Python dependencies and the ``panopipe`` command, without the CDK CLI (steps that only run panopipe).
PYTHON_SETUP = "make .venv/.installed"
#: Where the project's console script is once :data:`PYTHON_SETUP` ran.
PANOPIPE = ".venv/bin/panopipe"
#: Where the code package build leaves the asset (the build step's output, the register steps' input).
CODE_PACKAGE_DIR = "code-package"


def synth(delivery_file: str) -> str:
    """Synthesize the delivery app (the pipeline and every stage) with the pinned CDK CLI."""
    return f"make delivery-synth DELIVERY={shlex.quote(delivery_file)}"


def build_code_package(cache_uri: str) -> str:
    """Build the arm64 code package, or reuse the one built for the same ``panorama_app/`` sources."""
    return f"{PANOPIPE} package-app --build-only --output {CODE_PACKAGE_DIR} --cache {shlex.quote(cache_uri)}"


def register_code_package(config_file: str, role_arn: str) -> str:
    """Register the built asset as the environment's code package version (in its account)."""
    return (
        f"{PANOPIPE} package-app --config {shlex.quote(config_file)} --asset {CODE_PACKAGE_DIR} "
        f"--role-arn {shlex.quote(role_arn)}"
    )


def verify_stage(role_arn: str, smoke_model: str | None = None, smoke_timeout_minutes: int | None = None) -> str:
    """Check the stage's state machine and buckets (from its outputs), and run the smoke run if asked."""
    command = f"{PANOPIPE} verify-stage --role-arn {shlex.quote(role_arn)}"
    if smoke_model is not None:
        command += f" --smoke-model {shlex.quote(smoke_model)}"
        if smoke_timeout_minutes is not None:
            command += f" --smoke-timeout-minutes {smoke_timeout_minutes}"
    return command
