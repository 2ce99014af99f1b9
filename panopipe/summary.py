"""Summarize a synthesized cloud assembly: what `cdk deploy '**'` would create, stack by stack."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class StackSummary:
    """The deployable facts of one stack template."""

    stack_name: str
    template: Path
    termination_protection: bool
    resources: Counter[str] = field(default_factory=Counter)
    buckets: list[str] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)


def _named(value: Any) -> str:
    if isinstance(value, dict) and "Fn::Sub" in value:
        return str(value["Fn::Sub"])
    return str(value)


def summarize(assembly_dir: Path) -> list[StackSummary]:
    """Every stack in the assembly, nested stage assemblies included, in manifest order."""
    manifest = json.loads((assembly_dir / "manifest.json").read_text())
    summaries: list[StackSummary] = []
    for artifact_id, artifact in manifest.get("artifacts", {}).items():
        props = artifact.get("properties", {})
        if artifact["type"] == "cdk:cloud-assembly":
            summaries += summarize(assembly_dir / props["directoryName"])
        elif artifact["type"] == "aws:cloudformation:stack":
            path = assembly_dir / props["templateFile"]
            resources = json.loads(path.read_text()).get("Resources", {})
            summary = StackSummary(
                stack_name=props.get("stackName", artifact_id),  # absent when it is the artifact's id
                template=path,
                termination_protection=bool(props.get("terminationProtection", False)),
            )
            for resource in resources.values():
                summary.resources[resource["Type"]] += 1
                properties = resource.get("Properties", {})
                if resource["Type"] == "AWS::S3::Bucket":
                    summary.buckets.append(_named(properties.get("BucketName", "<generated>")))
                elif resource["Type"] == "AWS::IAM::Role":
                    summary.roles.append(_named(properties.get("RoleName", "<generated>")))
            summaries.append(summary)
    return summaries


def render(summaries: list[StackSummary]) -> str:
    """Plain-text report for the terminal."""
    lines = []
    for s in summaries:
        protected = ", termination protection on" if s.termination_protection else ""
        total = sum(s.resources.values())
        lines.append(f"{s.stack_name}: {total} resources{protected}")
        for type_, count in sorted(s.resources.items()):
            lines.append(f"    {count:>3}  {type_}")
        lines += [f"    bucket  {name}" for name in s.buckets]
        lines += [f"    role    {name}" for name in s.roles]
    return "\n".join(lines)
