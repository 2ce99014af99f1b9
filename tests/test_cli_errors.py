"""CLI misuse and expected failures: one `error:` line on stderr, no traceback, and the documented exit code.

Exit codes (panopipe/exit_codes.py): 1 a failed run, 2 usage or input error, 3 AWS not ready or refusing.
Every test runs under moto (the `aws` fixture): a refusal must come before any real AWS call anyway.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import boto3
import pytest
from typer.testing import CliRunner, Result

from panopipe import exit_codes, runs
from panopipe.cli import app
from tests.conftest import ROOT
from tests.test_cli import aws, deployed_pipeline  # noqa: F401  (aws: a fixture, used by name)

pytestmark = pytest.mark.usefixtures("aws")
cli = CliRunner()
DEV = str(ROOT / "config" / "dev.yaml")
USAGE, AWS = exit_codes.USAGE, exit_codes.AWS


def refused(args: list[str], code: int, *expected: str, one_line: bool = True) -> Result:
    """Run the command; it must exit ``code`` with an ``error:`` on stderr naming ``expected``, no traceback."""
    result = cli.invoke(app, args)
    assert isinstance(result.exception, SystemExit), f"{args}: not an error line but {result.exception!r}"
    assert result.exit_code == code, (args, result.output)
    assert result.stderr.startswith("error: ") or "\nerror: " in result.stderr, result.output
    assert "Traceback" not in result.output
    if one_line:
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    for text in expected:
        assert text in result.stderr, (text, result.stderr)
    return result


# --- config files that are not configs: exit 2, whatever the command ---------------------------------

BAD_FILES: dict[str, bytes | None] = {
    "binary": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe",
    "latin-1": "project: café\n".encode("latin-1"),
    "utf-16": "project: panopipe\n".encode("utf-16"),
    "nul bytes": b"project: pano\x00pipe\n",
    "empty": b"",
    "a list": b"- project: panopipe\n",
    "a directory": None,
}
COMMANDS = {
    "validate": lambda path: ["validate", path],
    "run": lambda path: ["run", "--config", path, "--no-watch"],
    "status": lambda path: ["status", "-c", path],
    "watch": lambda path: ["watch", "--config", path],
    "local up": lambda path: ["local", "up", "--config", path],
}


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("kind", BAD_FILES)
def test_a_file_that_is_no_config_is_an_input_error(kind: str, command: str, tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    content = BAD_FILES[kind]
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    result = refused(COMMANDS[command](str(path)), USAGE, str(path), one_line=False)
    if kind in ("binary", "latin-1", "utf-16"):
        assert "UTF-8" in result.stderr


def test_a_decoding_error_from_the_loader_is_caught_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever the loader does with a binary file, the CLI never shows a UnicodeDecodeError's traceback."""
    import panopipe.config

    def undecodable(*_: Any, **__: Any) -> None:
        b"\x89PNG".decode("utf-8")

    monkeypatch.setattr(panopipe.config, "load_config", undecodable)
    refused(["validate", DEV], USAGE, "dev.yaml: not a text file (byte 0x89 at offset 0 is not UTF-8)")


# --- run: conflicting and malformed options, before anything is read or uploaded ---------------------

MODEL = "s3://aws-panorama-models/people/model.tar.gz"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--model", MODEL, "--training-job", "job-1"], "--model and --training-job exclude each other"),
        (["--model", MODEL, "--dataset", "."], "--model skips the data set: it excludes --dataset"),
        (["--model", MODEL, "--name", "people"], "--model skips the data set: it excludes --name"),
        (["--training-job", "job-1", "--dataset", "."], "--training-job skips the data set: it excludes --dataset"),
        (["--training-job", "job-1", "--name", "x"], "--training-job skips the data set: it excludes --name"),
        (["--model", MODEL, "--dataset", ".", "--name", "x"], "it excludes --dataset and --name"),
    ],
)
def test_conflicting_run_options_are_refused(options: list[str], message: str) -> None:
    refused(["run", "-c", DEV, *options], USAGE, message)


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("", "is empty"),
        ("a/b", "must be one folder name, without /"),
        ("/abs", "must be one folder name, without /"),
        ("..", "must not be . or .."),
        (".", "must not be . or .."),
        ("a..b", "must not contain .."),
        ("has space", "may only hold letters, digits, . _ and -"),
        ("café", "may only hold letters, digits, . _ and -"),
        ("a*b", "may only hold letters, digits, . _ and -"),
        ("semi;colon", "may only hold letters, digits, . _ and -"),
        ("x" * 101, "is 101 characters long (at most 100)"),
    ],
)
def test_an_invalid_data_set_name_is_refused(name: str, problem: str) -> None:
    refused(["run", "-c", DEV, "--name", name], USAGE, f"--name {name!r}: {problem}")


@pytest.mark.parametrize("name", ["people-2026.11_v2", "A", "x" * 100])
def test_a_valid_data_set_name_gets_as_far_as_aws(name: str) -> None:
    refused(["run", "-c", DEV, "--name", name], AWS, "stack panopipe-dev-pipeline is not deployed")


@pytest.mark.parametrize("model", ["model.tar.gz", "s3://", "s3://Upper/model.tar.gz", "https://host/model.tar.gz"])
def test_a_model_that_is_no_s3_uri_is_refused(model: str) -> None:
    refused(["run", "-c", DEV, "--model", model], USAGE, f"--model {model!r}: must be an s3:// URI")


@pytest.mark.parametrize("job", ["job_1", "-job", "j" * 64])
def test_a_training_job_that_is_no_job_name_is_refused(job: str) -> None:
    refused(["run", "-c", DEV, "--training-job", job], USAGE, "must be a SageMaker training job name")


def test_a_data_set_folder_must_exist_and_hold_train_and_validation(tmp_path: Path) -> None:
    refused(["run", "-c", DEV, "--dataset", str(tmp_path / "nope")], USAGE, "nope: no such folder")
    (tmp_path / "file").write_text("x")
    refused(["run", "-c", DEV, "--dataset", str(tmp_path / "file")], USAGE, "file: no such folder")
    (tmp_path / "train").mkdir()
    refused(
        ["run", "-c", DEV, "--dataset", str(tmp_path)],
        USAGE,
        "must hold train/ and validation/ folders (a prepared data set) or one folder of .jpg/.jpeg/.png images "
        "per class (raw: the pipeline prepares it)",
    )


def test_a_raw_data_set_of_class_folders_gets_as_far_as_aws(tmp_path: Path) -> None:
    (tmp_path / "person").mkdir()
    (tmp_path / "person" / "1.PNG").write_bytes(b"an image")
    refused(["run", "-c", DEV, "--dataset", str(tmp_path)], AWS, "stack panopipe-dev-pipeline is not deployed")


def test_local_outputs_needs_the_local_aws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from panopipe import local_state

    monkeypatch.setattr(local_state, "STATE_FILE", tmp_path / "local.json")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    refused(["local", "outputs", "-c", DEV], USAGE, "the local AWS is not running: start it with make local")


# --- watch: malformed and unknown runs ---------------------------------------------------------------


@pytest.mark.parametrize(
    "arn",
    [
        "arn:",
        "arn:aws:s3:::a-bucket",
        "arn:aws:states:us-east-1:123456789012:stateMachine:panopipe-dev-pipeline",
        "arn:aws:states:us-east-1:1234:execution:machine:run",
        "arn:aws:states:us-east-1:123456789012:execution:machine:run with space",
    ],
)
def test_a_malformed_execution_arn_is_refused(arn: str) -> None:
    refused(["watch", arn], USAGE, f"{arn!r} is not an execution ARN")


@pytest.mark.parametrize("run", ["a run", "a/b"])
def test_something_that_is_no_run_name_is_refused(run: str) -> None:
    refused(["watch", run], USAGE, "is neither an execution ARN nor a run name")


def test_an_unknown_execution_or_run_is_an_input_error() -> None:
    arn = "arn:aws:states:us-east-1:123456789012:execution:panopipe-dev-pipeline:nope"
    refused(["watch", arn], USAGE, f"no run {arn} here")
    deployed_pipeline()
    refused(["watch", "no-such-run", "-c", DEV], USAGE, "no run arn:aws:states:us-east-1:", ":no-such-run here")


def test_watch_without_any_run_says_how_to_start_one() -> None:
    deployed_pipeline()
    refused(["watch", "-c", DEV], AWS, "no run yet: start one with panopipe run")


# --- AWS not ready: no region, no credentials, unreachable --------------------------------------------

NEEDS_THE_PIPELINE = [["run", "-c", DEV, "--model", MODEL], ["status", "-c", DEV], ["watch", "-c", DEV]]


@pytest.mark.parametrize("args", NEEDS_THE_PIPELINE, ids=lambda args: args[0])
def test_no_region_says_how_to_set_one(args: list[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    refused(
        args, AWS, "no AWS region is configured: set AWS_REGION", "`aws configure`", "region: in the config", "local up"
    )


@pytest.mark.parametrize("args", NEEDS_THE_PIPELINE, ids=lambda args: args[0])
def test_no_credentials_is_not_reported_as_not_deployed(
    args: list[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    deployed_pipeline()
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    for name in (
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # it caches the credentials it found before
    result = refused(args, AWS, "no AWS credentials found", "aws configure")
    assert "not deployed" not in result.stderr


def test_an_unreachable_endpoint_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    refused(["status", "-c", DEV], AWS, "cannot reach AWS while looking up the stack", "local AWS still running?")


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("ExpiredToken", "AWS refused the credentials while starting a run (ExpiredToken: it expired): refresh them"),
        ("AccessDeniedException", "AWS denied access while starting a run (AccessDeniedException: it expired)"),
        ("ThrottlingException", "AWS error while starting a run: ThrottlingException: it expired"),
    ],
)
def test_aws_refusals_are_one_line_each(code: str, expected: str) -> None:
    from botocore.exceptions import ClientError

    error = ClientError({"Error": {"Code": code, "Message": "it expired"}}, "StartExecution")
    with pytest.raises(runs.RunError) as caught, runs.aws_errors("starting a run"):
        raise error
    assert str(caught.value).startswith(expected) and caught.value.exit_code == AWS


# --- what Click refuses itself is a usage error too ---------------------------------------------------


@pytest.mark.parametrize("args", [["run", "--no-such-option"], ["no-such-command"], ["run", "--model"]])
def test_click_usage_errors_exit_2(args: list[str]) -> None:
    result = cli.invoke(app, args)
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit)
