"""The delivery file: where the GitOps pipeline lives, what it watches, and the environments it deploys.

``cdk synth|deploy -c delivery=<file>`` reads it (``app.py``); without it the app holds one
environment as before. Each stage names an environment's own config file (the same file ``cdk
deploy -c config=<file>`` takes), optionally with the account and region the pipeline deploys it to,
so a file written for an environment-agnostic deploy (``config/dev.yaml``) needs no copy. Every
stage must end up with an explicit account and region: CDK Pipelines deploys across accounts only
to known environments.

Problems are reported like the environment config's (:class:`ConfigError`, one line each), those of
a stage's file prefixed with the stage.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Annotated, Any

from pydantic import Field, ValidationError, model_validator

from panopipe.config.loader import load_config
from panopipe.config.problems import ConfigError, Problem, problems_from
from panopipe.config.schema import EnvironmentConfig
from panopipe.config.section_base import Section
from panopipe.config.yaml_source import read_yaml
from panopipe.naming import BucketNameError, bucket_name
from panopipe.project import ROOT

#: The environment word in the delivery stack's bucket names (short: they hold the toolchain's region).
DELIVERY_ENVIRONMENT = "cd"
#: Most stages one pipeline deploys (each is a CodePipeline stage with its own steps).
MAX_STAGES = 10

_ACCOUNT = Annotated[str, Field(pattern=r"^[0-9]{12}$")]
_REGION = Annotated[str, Field(pattern=r"^[a-z]{2}(-gov|-iso[a-z]*)?-[a-z]+-[0-9]$")]
_BRANCH = re.compile(r"^(?!-)(?!.*\.\.)(?!.*//)(?!.*\.lock$)[A-Za-z0-9._/-]{1,255}(?<![/.])$")


#: What the pattern-checked fields take, in words (see :func:`~panopipe.config.problems.problems_from`).
_PATTERN_RULES = {
    "name": "lower-case letters and digits in words joined by single hyphens, starting with a letter",
    "account": 'a 12-digit AWS account id of ASCII digits 0-9, quoted ("123456789012")',
    "toolchain.region": "an AWS region name (e.g. us-west-2)",
    "source.connection_arn": "a CodeStar connection ARN (arn:aws:codeconnections:<region>:<account>:connection/<id>)",
    "source.repository": "owner/name of the repository (e.g. my-org/panorama-pipeline)",
    "source.codecommit": "a CodeCommit repository name (letters, digits, . _ -; at most 100)",
    "stages.smoke_run.model": "an S3 key of a .tar.gz model in the stage's data bucket (no leading /)",
}


class Toolchain(Section):
    """The account and region that hold the delivery pipeline (default: the first stage's)."""

    account: _ACCOUNT
    region: _REGION


class Source(Section):
    """The repository the pipeline watches: a CodeStar connection (GitHub, GitLab, Bitbucket) or CodeCommit."""

    connection_arn: (
        Annotated[
            str,
            Field(
                pattern=r"^arn:aws[a-z-]*:(codestar-connections|codeconnections):[a-z0-9-]+:[0-9]{12}:connection/[A-Za-z0-9-]+$"
            ),
        ]
        | None
    ) = None
    repository: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)+$", max_length=200)] | None = None
    codecommit: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,100}$")] | None = None
    branch: Annotated[str, Field(min_length=1, max_length=255)] = "main"

    @model_validator(mode="after")
    def _one_kind(self) -> Source:
        connection = self.connection_arn is not None or self.repository is not None
        if connection and self.codecommit is not None:
            raise ValueError("give either connection_arn with repository, or codecommit, not both")
        if not connection and self.codecommit is None:
            raise ValueError("give connection_arn with repository (GitHub, GitLab, Bitbucket), or codecommit")
        if connection and (self.connection_arn is None or self.repository is None):
            raise ValueError("a CodeStar connection needs both connection_arn and repository (owner/name)")
        if not _BRANCH.match(self.branch):
            raise ValueError(f"branch {self.branch!r} is not a git branch name")
        return self


class SmokeRun(Section):
    """A run started after the stage deploys, from a small model already in the stage's data bucket."""

    model: Annotated[str, Field(pattern=r"^[^/\s][^\s]{0,999}\.tar\.gz$")]
    timeout_minutes: Annotated[int, Field(ge=5, le=480)] = 60


class StageEntry(Section):
    """One environment the pipeline deploys, in order."""

    config: Annotated[str, Field(min_length=1, max_length=500)]
    account: _ACCOUNT | None = None
    region: str | None = None
    manual_approval: bool = False
    smoke_run: SmokeRun | None = None


class DeliverySettings(Section):
    """The delivery file as written."""

    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$", min_length=2, max_length=20)]
    toolchain: Toolchain | None = None
    source: Source
    stages: Annotated[tuple[StageEntry, ...], Field(min_length=1, max_length=MAX_STAGES)]


@dataclass(frozen=True)
class DeliveryStage:
    """A stage: its entry, the environment's validated config, and its file as the pipeline names it."""

    entry: StageEntry
    config: EnvironmentConfig
    config_path: str

    @property
    def account(self) -> str:
        """The account the stage deploys to."""
        assert self.config.account is not None  # checked by load_delivery
        return self.config.account

    @property
    def region(self) -> str:
        """The region the stage deploys to."""
        assert self.config.region is not None  # checked by load_delivery
        return self.config.region


@dataclass(frozen=True)
class Delivery:
    """Everything the delivery stack is built from (read once, in ``app.py``)."""

    path: str
    settings: DeliverySettings
    stages: tuple[DeliveryStage, ...]
    toolchain: Toolchain
    cdk_cli_version: str

    @property
    def name(self) -> str:
        """The pipeline's name and the prefix of its resources."""
        return self.settings.name

    def bucket_name(self, purpose: str) -> str:
        """A bucket of the delivery stack, by the project's naming rule."""
        return bucket_name(self.name, DELIVERY_ENVIRONMENT, purpose, self.toolchain.account, self.toolchain.region)


def _repository_path(text: str) -> str | None:
    """Why ``text`` is not a relative path inside the repository, or None."""
    path = PurePosixPath(text)
    if path.is_absolute() or "\\" in text:
        return "must be a path relative to the repository root, with / (the pipeline reads it from its checkout)"
    if ".." in path.parts:
        return "must stay inside the repository (no ..)"
    return None


def cdk_cli_version(root: Path = ROOT) -> str:
    """The CDK CLI pinned in package.json: the pipeline's self-mutation installs the same one."""
    return str(json.loads((root / "package.json").read_text())["devDependencies"]["aws-cdk"])


def _stage(index: int, entry: StageEntry, root: Path, problems: list[Problem]) -> DeliveryStage | None:
    where = f"stages[{index}]"
    if problem := _repository_path(entry.config):
        problems.append(Problem(f"{where}.config", entry.config, problem))
        return None
    file = root / entry.config
    if not file.is_file():
        problems.append(Problem(f"{where}.config", entry.config, "no such file in the repository"))
        return None
    overrides = {k: v for k, v in (("account", entry.account), ("region", entry.region)) if v is not None}
    try:
        config = load_config(file, base_dir=root, overrides=overrides)
    except ConfigError as error:
        problems.extend(Problem(f"{where} ({entry.config}) {p.field}", p.value, p.rule) for p in error.problems)
        return None
    if conflicts := _overridden(file, overrides):
        problems.extend(
            Problem(
                f"{where}.{field}",
                overrides[field],
                f"{entry.config} sets {field} {own!r} already: say it in one place (the stage's steps, "
                "e.g. panopipe package-app, read the environment from the file)",
            )
            for field, own in conflicts
        )
        return None
    for field in ("account", "region"):
        if getattr(config, field) is None:
            problems.append(
                Problem(
                    f"{where}.{field}",
                    None,
                    f"{entry.config} has no {field}: set it there or here "
                    "(the pipeline deploys to a known environment)",
                )
            )
    return DeliveryStage(entry, config, PurePosixPath(entry.config).as_posix())


def _overridden(file: Path, overrides: dict[str, str]) -> list[tuple[str, Any]]:
    """The (field, the file's own value) that ``overrides`` would replace with a different value."""
    data = read_yaml(file)
    own = data if isinstance(data, dict) else {}
    return [(f, own[f]) for f, value in overrides.items() if own.get(f) is not None and str(own[f]) != value]


def _cross_stage_problems(stages: list[tuple[int, DeliveryStage]]) -> list[Problem]:
    problems = []
    seen: dict[str, int] = {}
    for index, stage in stages:
        environment = stage.config.environment
        if environment in seen:
            problems.append(
                Problem(
                    f"stages[{index}]",
                    stage.config_path,
                    f"environment {environment!r} is already stage {seen[environment]}: each stage deploys its own",
                )
            )
        seen.setdefault(environment, index)
    return problems


def parse_delivery(data: Any, source: str, root: Path = ROOT) -> Delivery:
    """Validate a delivery mapping and load each stage's config; raise :class:`ConfigError` listing every problem."""
    if not isinstance(data, dict):
        raise ConfigError(source, [Problem("<root>", data, "the file must hold a YAML mapping")])
    try:
        settings = DeliverySettings.model_validate(data)
    except ValidationError as error:
        raise ConfigError(source, problems_from(error, DeliverySettings, _PATTERN_RULES)) from None
    problems: list[Problem] = []
    loaded = [(i, s) for i, e in enumerate(settings.stages) if (s := _stage(i, e, root, problems)) is not None]
    problems.extend(_cross_stage_problems(loaded))
    if problems:
        raise ConfigError(source, problems)
    stages = [stage for _, stage in loaded]
    first = stages[0]
    toolchain = settings.toolchain or Toolchain(account=first.account, region=first.region)
    delivery = Delivery(source, settings, tuple(stages), toolchain, cdk_cli_version(root))
    try:
        delivery.bucket_name("artifacts")
    except BucketNameError as error:
        raise ConfigError(source, [Problem("name", settings.name, str(error))]) from None
    return delivery


def load_delivery(path: str | Path, root: Path = ROOT) -> Delivery:
    """Read the delivery file (relative to the current folder, else the project root) and its stages' configs."""
    file = Path(path)
    if not file.is_file() and (root / file).is_file():
        file = root / file
    try:
        shown = file.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        raise ConfigError(
            str(path), [Problem("<file>", str(path), "must be inside the repository (the pipeline synthesizes it)")]
        ) from None
    return parse_delivery(read_yaml(file), shown, root)
