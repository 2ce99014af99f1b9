"""Run a command's AWS calls as a role in another account (``--role-arn``).

The delivery pipeline's CodeBuild steps run in the toolchain account and act in each environment's
account through a role that environment trusts. Assuming it once and exporting the temporary
credentials through the standard variables reaches every client the command makes (boto3's, and the
Panorama client built from the carried API model), as the local mode does with its endpoint.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager

from panopipe.environ import environment
from panopipe.runs import RunError, aws_errors

#: An IAM role ARN (any partition; the path may hold slashes).
ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]{1,512}")
#: STS RoleSessionName: 2-64 of these characters.
_SESSION_CHARS = re.compile(r"[^\w+=,.@-]")
_CREDENTIALS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")


def role_arn_problem(role_arn: str) -> str | None:
    """Why ``role_arn`` is not an IAM role ARN, or None."""
    if ROLE_ARN.fullmatch(role_arn):
        return None
    return "must be an IAM role ARN (arn:aws:iam::<12-digit account>:role/<name>)"


def session_name(purpose: str) -> str:
    """A RoleSessionName for ``purpose`` (CloudTrail shows it): panopipe-<purpose>, 2-64 valid characters."""
    return _SESSION_CHARS.sub("-", f"panopipe-{purpose}")[:64]


@contextmanager
def assumed_role(role_arn: str | None, purpose: str, region: str | None = None) -> Iterator[None]:
    """Inside the block, every AWS client made there uses ``role_arn``'s temporary credentials.

    ``role_arn`` None changes nothing. Clients made before the block keep their credentials.

    The caller's own credentials (any source of the default chain) assume the role; the previous
    variables are restored on exit. A refusal becomes a :class:`~panopipe.runs.RunError`.
    """
    if role_arn is None:
        yield
        return
    import boto3

    with aws_errors(f"assuming the role {role_arn}"):
        # a fresh session: the default one keeps whatever credentials it resolved first
        sts = boto3.session.Session().client("sts", region_name=region)
        credentials = sts.assume_role(RoleArn=role_arn, RoleSessionName=session_name(purpose))["Credentials"]
    values = (credentials["AccessKeyId"], credentials["SecretAccessKey"], credentials["SessionToken"])
    # a profile would win over the variables in some SDKs
    with environment(dict(zip(_CREDENTIALS, values, strict=True)), cleared=("AWS_PROFILE",)):
        boto3.DEFAULT_SESSION = None  # it keeps the credentials it resolved first: the next client resolves anew
        try:
            yield
        finally:
            boto3.DEFAULT_SESSION = None


__all__ = ["ROLE_ARN", "RunError", "assumed_role", "role_arn_problem", "session_name"]
