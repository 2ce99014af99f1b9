"""cdk-nag acknowledgements: one helper so every suppression carries its rule, finding and reason."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

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


def rendered(scope: IConstruct, value: str) -> str:
    """``value`` (a string or token) the way cdk-nag prints it in a finding id.

    Resolves tokens in ``scope``'s stack: ``Ref`` of a pseudo parameter → ``<AWS::X>``,
    ``Fn::GetAtt`` → ``<Id.Attr>``, ``Fn::Sub`` → its template with ``<AWS::X>``, ``Fn::Join`` → joined.
    """
    from aws_cdk import Stack

    return _render(Stack.of(scope).resolve(value))


def _render(node: Any) -> str:
    if isinstance(node, str):
        return node
    if isinstance(node, dict) and len(node) == 1:
        ((kind, arg),) = node.items()
        if kind == "Ref":
            return f"<{arg}>"
        if kind == "Fn::GetAtt":
            return f"<{arg[0]}.{arg[1]}>"
        if kind == "Fn::Sub" and isinstance(arg, str):
            return re.sub(r"\$\{([A-Za-z0-9:.]+)\}", r"<\1>", arg)
        if kind == "Fn::Join":
            return str(arg[0]).join(_render(part) for part in arg[1])
    raise ValueError(f"cannot render {node!r} as a cdk-nag finding")


def wildcard_findings(scope: IConstruct, actions: Iterable[str], resources: Iterable[str]) -> list[str]:
    """The IAM5 findings a statement with these actions and resources produces (wildcards only)."""
    found = [f"Action::{a}" for a in actions if "*" in a]
    for resource in resources:
        text = rendered(scope, resource)
        if "*" in text:
            found.append(f"Resource::{text}")
    return found
