"""The delivery file: what it takes, what it refuses (every problem at once, naming field, value and rule)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from panopipe.config import ConfigError
from panopipe.config.delivery import load_delivery, parse_delivery
from tests.conftest import DELIVERY_FILE, ROOT

CONNECTION = "arn:aws:codeconnections:us-west-2:111111111111:connection/0a1b2c3d-4e5f-6789-abcd-ef0123456789"


def delivery(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / DELIVERY_FILE).read_text())
    data.update(changes)
    return data


def problems(data: Any) -> list[str]:
    with pytest.raises(ConfigError) as error:
        parse_delivery(data, "d.yaml", ROOT)
    return [str(p) for p in error.value.problems]


def test_the_example_names_two_stages_in_order_with_approval_before_prod() -> None:
    loaded = load_delivery(DELIVERY_FILE, ROOT)
    assert loaded.path == DELIVERY_FILE
    assert [(s.config.prefix, s.account, s.region, s.entry.manual_approval) for s in loaded.stages] == [
        ("panopipe-dev", "222222222222", "us-west-2", False),
        ("panopipe-prod", "123456789012", "us-west-2", True),
    ]
    assert loaded.stages[0].entry.smoke_run is not None
    assert loaded.stages[0].entry.smoke_run.model == "smoke/people_classifier.tar.gz"
    assert loaded.bucket_name("artifacts") == "aws-panorama-panopipe-cd-artifacts-111111111111-us-west-2"
    assert loaded.cdk_cli_version == "2.1148.1"


def test_the_toolchain_defaults_to_the_first_stage() -> None:
    data = delivery()
    del data["toolchain"]
    loaded = parse_delivery(data, "d.yaml", ROOT)
    assert (loaded.toolchain.account, loaded.toolchain.region) == ("222222222222", "us-west-2")


def test_load_finds_the_file_from_the_project_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_delivery(DELIVERY_FILE, ROOT).name == "panopipe"


def test_a_file_outside_the_repository_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "d.yaml"
    outside.write_text(yaml.safe_dump(delivery()))
    with pytest.raises(ConfigError, match="must be inside the repository"):
        load_delivery(outside, ROOT)


def test_codecommit_is_the_other_source() -> None:
    loaded = parse_delivery(delivery(source={"codecommit": "panorama-pipeline"}), "d.yaml", ROOT)
    assert loaded.settings.source.codecommit == "panorama-pipeline"
    assert loaded.settings.source.branch == "main"


@pytest.mark.parametrize(
    ("source", "rule"),
    [
        ({"codecommit": "repo", "connection_arn": CONNECTION, "repository": "o/r"}, "not both"),
        ({"branch": "main"}, "give connection_arn with repository (GitHub, GitLab, Bitbucket), or codecommit"),
        ({"connection_arn": CONNECTION}, "needs both connection_arn and repository"),
        ({"codecommit": "repo", "branch": "feature..x"}, "branch 'feature..x' is not a git branch name"),
        ({"connection_arn": "arn:aws:s3:::bucket", "repository": "o/r"}, "must be a CodeStar connection ARN"),
        ({"connection_arn": CONNECTION, "repository": "just-a-name"}, "must be owner/name of the repository"),
    ],
)
def test_the_source_is_one_repository(source: dict[str, str], rule: str) -> None:
    (problem,) = problems(delivery(source=source))
    assert problem.startswith("source")
    assert rule in problem


def test_every_problem_is_reported_at_once() -> None:
    data = delivery(
        name="Panopipe",
        toolchain={"account": "1111", "region": "Oregon"},
        stages=[
            {"config": "/etc/dev.yaml"},
            {"config": "../outside.yaml"},
            {"config": "config/missing.yaml"},
            {"config": "config/dev.yaml", "smoke_run": {"model": "/smoke/m.zip", "timeout_minutes": 1}},
            {"config": "config/dev.yaml", "unknown": 1},
        ],
    )
    assert problems(data) == [
        "name = 'Panopipe': must be lower-case letters and digits in words joined by single hyphens, "
        "starting with a letter",
        "toolchain.account = '1111': must be a 12-digit AWS account id of ASCII digits 0-9, quoted (\"123456789012\")",
        "toolchain.region = 'Oregon': must be an AWS region name (e.g. us-west-2)",
        "stages[3].smoke_run.model = '/smoke/m.zip': must be an S3 key of a .tar.gz model in the stage's data bucket "
        "(no leading /)",
        "stages[3].smoke_run.timeout_minutes = 1: Input should be greater than or equal to 5",
        "stages[4].unknown = 1: unknown field; allowed here: config, account, region, manual_approval, smoke_run",
    ]


def test_stage_files_are_checked_and_their_problems_named_with_the_stage() -> None:
    data = delivery(
        stages=[
            {"config": "/etc/dev.yaml"},
            {"config": "../outside.yaml"},
            {"config": "config/missing.yaml"},
            {"config": "config/dev.yaml"},
            {"config": "config/dev.yaml", "account": "222222222222", "region": "eu-central-1"},
            {"config": "config/example.yaml"},
            {"config": "config/example.yaml"},
            {"config": "config/example.yaml", "account": "123456789012", "region": "us-east-1"},
        ]
    )
    assert problems(data) == [
        "stages[0].config = '/etc/dev.yaml': must be a path relative to the repository root, with / "
        "(the pipeline reads it from its checkout)",
        "stages[1].config = '../outside.yaml': must stay inside the repository (no ..)",
        "stages[2].config = 'config/missing.yaml': no such file in the repository",
        "stages[3].account = None: config/dev.yaml has no account: set it there or here "
        "(the pipeline deploys to a known environment)",
        "stages[3].region = None: config/dev.yaml has no region: set it there or here "
        "(the pipeline deploys to a known environment)",
        "stages[4] (config/dev.yaml) region = 'eu-central-1': AWS Panorama is available only in us-east-1, "
        "us-west-2, ca-central-1, eu-west-1, ap-southeast-1, ap-southeast-2",
        "stages[7].region = 'us-east-1': config/example.yaml sets region 'us-west-2' already: say it in one place "
        "(the stage's steps, e.g. panopipe package-app, read the environment from the file)",
        "stages[6] = 'config/example.yaml': environment 'prod' is already stage 5: each stage deploys its own",
    ]


def test_a_name_too_long_for_the_bucket_names_is_refused() -> None:
    (problem,) = problems(delivery(name="a-very-long-pipeline"))
    assert problem.startswith("name = 'a-very-long-pipeline': bucket name 'aws-panorama-a-very-long-pipeline-cd-")
    assert "S3 allows at most 63" in problem
