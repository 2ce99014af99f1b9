"""The one place that builds resource names: the bucket naming rule and the resource prefix.

Every bucket the pipeline uses must carry ``aws-panorama`` in its name: the Panorama service
role policies scope S3 access to ``arn:aws:s3:::*aws-panorama*`` (the marker is defined once, in
``lambda_handlers.domain``, where the handlers check run inputs by the same rule). Names are
checked here, at config/synth time, so a bad name never reaches CloudFormation.
"""

from __future__ import annotations

import re

from lambda_handlers.domain import BUCKET_NAME_MARKER

#: Regions where AWS Panorama had endpoints (service reached end of support on 2026-05-31).
PANORAMA_REGIONS: tuple[str, ...] = (
    "us-east-1",
    "us-west-2",
    "ca-central-1",
    "eu-west-1",
    "ap-southeast-1",
    "ap-southeast-2",
)

#: Purposes of the buckets this project creates (each is part of a bucket name).
BUCKET_PURPOSES: tuple[str, ...] = ("data", "artifacts", "logs")

MAX_BUCKET_NAME_LENGTH = 63

#: CloudFormation pseudo parameters, used when the stack has no fixed account or region.
ACCOUNT_PSEUDO = "${AWS::AccountId}"
REGION_PSEUDO = "${AWS::Region}"
_ACCOUNT_WORST_CASE = "0" * 12
_REGION_WORST_CASE = max(PANORAMA_REGIONS, key=len)

_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")


class BucketNameError(ValueError):
    """A bucket name breaks an S3 naming rule or lacks the ``aws-panorama`` marker."""


def bucket_name(project: str, environment: str, purpose: str, account: str | None, region: str | None) -> str:
    """Return ``aws-panorama-<project>-<env>-<purpose>-<account>-<region>``, checked.

    When ``account`` or ``region`` is ``None`` (an environment-agnostic stack) the result holds
    CloudFormation pseudo parameters for ``Fn::Sub``; the length rule is then checked against
    the longest value they can take (12 digits, the longest Panorama region name).
    """
    if purpose not in BUCKET_PURPOSES:
        raise BucketNameError(f"bucket purpose {purpose!r} is not one of {', '.join(BUCKET_PURPOSES)}")
    name = (
        f"{BUCKET_NAME_MARKER}-{project}-{environment}-{purpose}-{account or ACCOUNT_PSEUDO}-{region or REGION_PSEUDO}"
    )
    check_bucket_name(name.replace(ACCOUNT_PSEUDO, _ACCOUNT_WORST_CASE).replace(REGION_PSEUDO, _REGION_WORST_CASE))
    return name


def check_bucket_name(name: str) -> None:
    """Raise :class:`BucketNameError` naming the rule that a resolved ``name`` breaks."""
    if len(name) > MAX_BUCKET_NAME_LENGTH:
        raise BucketNameError(
            f"bucket name {name!r} would be {len(name)} characters; S3 allows at most "
            f"{MAX_BUCKET_NAME_LENGTH} (shorten the project or environment name)"
        )
    if not _BUCKET_RE.match(name) or "--" in name:
        raise BucketNameError(
            f"bucket name {name!r} must be lower-case letters, digits and single hyphens, "
            "starting and ending with a letter or digit"
        )
    if BUCKET_NAME_MARKER not in name:
        raise BucketNameError(f"bucket name {name!r} must contain {BUCKET_NAME_MARKER!r}")


def resource_prefix(project: str, environment: str) -> str:
    """Prefix of stack, role and key names: ``<project>-<env>``."""
    return f"{project}-{environment}"
