"""``--role-arn``: the command's clients act as the assumed role; the caller's credentials come back."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from panopipe.assumed_role import assumed_role, role_arn_problem, session_name
from panopipe.runs import RunError

ROLE = "arn:aws:iam::123456789012:role/panopipe-dev-delivery"


@pytest.fixture
def caller(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    from moto import mock_aws

    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-west-2")
    with mock_aws():
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "caller-key")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "caller-secret")
        yield


def test_clients_inside_use_the_role_and_the_caller_comes_back(caller: None) -> None:
    import boto3

    with assumed_role(ROLE, "verify dev", "us-west-2"):
        assert os.environ["AWS_ACCESS_KEY_ID"] != "caller-key"
        assert os.environ["AWS_SESSION_TOKEN"]
        identity = boto3.client("sts", region_name="us-west-2").get_caller_identity()
        assert identity["Arn"].startswith("arn:aws:sts::123456789012:assumed-role/panopipe-dev-delivery/")
        assert identity["Arn"].endswith("/panopipe-verify-dev")
    assert os.environ["AWS_ACCESS_KEY_ID"] == "caller-key"
    assert "AWS_SESSION_TOKEN" not in os.environ


def test_no_role_changes_nothing(caller: None) -> None:
    with assumed_role(None, "anything"):
        assert os.environ["AWS_ACCESS_KEY_ID"] == "caller-key"


def test_without_caller_credentials_it_says_so(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    credential_sources = (
        *("AWS_PROFILE", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"),
        *("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI"),
        *("AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN"),
    )
    for name in credential_sources:  # whatever the machine running the tests has
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    refused = pytest.raises(RunError, match=r"no AWS credentials found .* while assuming the role arn:aws:iam::")
    with refused, assumed_role(ROLE, "p", "us-west-2"):
        pass


@pytest.mark.parametrize(
    ("arn", "ok"),
    [
        (ROLE, True),
        ("arn:aws-cn:iam::123456789012:role/path/to/r", True),
        ("arn:aws:iam::1234:role/r", False),
        ("arn:aws:iam::123456789012:user/r", False),
        ("panopipe-dev-delivery", False),
    ],
)
def test_role_arn_rule(arn: str, ok: bool) -> None:
    assert (role_arn_problem(arn) is None) is ok


def test_session_name_is_valid_for_sts() -> None:
    assert session_name("verify dev/prod") == "panopipe-verify-dev-prod"
    assert len(session_name("x" * 100)) == 64
