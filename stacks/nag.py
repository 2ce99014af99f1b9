"""cdk-nag acknowledgements: one helper so every suppression carries its rule, finding and reason."""

from __future__ import annotations

import re
from collections.abc import Iterable

from aws_cdk import Acknowledgment, Validations
from constructs import IConstruct


def acknowledge(construct: IConstruct, rule: str, reason: str, findings: Iterable[str] = ()) -> None:
    """Acknowledge ``rule`` on ``construct`` (and its children), per finding when given.

    cdk-nag 3 reports wildcard rules per finding (``AwsSolutions-IAM5[Action::s3:*]``); naming
    each finding keeps a new, unreviewed wildcard from being silently covered.
    """
    ids = [f"{rule}[{finding}]" for finding in findings] or [rule]
    Validations.of(construct).acknowledge(*(Acknowledgment(id=i, reason=reason) for i in ids))


def finding(sub_template: str) -> str:
    """How cdk-nag prints a resource written as an ``Fn::Sub`` template: ``${AWS::X}`` → ``<AWS::X>``."""
    return "Resource::" + re.sub(r"\$\{(AWS::[A-Za-z]+)\}", r"<\1>", sub_template)
