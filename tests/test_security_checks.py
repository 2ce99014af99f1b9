"""cdk-nag (AwsSolutions) and cfn-lint over every synthesized template."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import Synthesized

GENERIC_REASONS = {"", "n/a", "not needed", "suppressed", "todo", "false positive"}


def test_cdk_nag_ran_and_passed(synthesized: Synthesized) -> None:
    """The session synth ran AwsSolutionsChecks (it raises on any finding): the report is empty."""
    report = json.loads((synthesized.outdir / "validation-report.json").read_text())
    assert report["pluginReports"] == []


def test_cdk_nag_fails_the_synth_on_an_unacknowledged_finding(tmp_path: Path) -> None:
    """The same plugin set-up rejects a plain bucket, so a passing synth means something."""
    import aws_cdk as cdk
    import pytest
    from aws_cdk import aws_s3 as s3
    from cdk_nag import AwsSolutionsChecks

    app = cdk.App(outdir=str(tmp_path))
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    s3.Bucket(cdk.Stack(app, "Bad"), "PlainBucket")
    with pytest.raises(Exception, match="AwsSolutions-S1"):
        app.synth()


def test_every_acknowledgement_gives_a_specific_reason(synthesized: Synthesized) -> None:
    tree = json.loads((synthesized.outdir / "tree.json").read_text())
    reasons: list[tuple[str, str, str]] = []

    def walk(node: dict) -> None:  # type: ignore[type-arg]
        for entry in node.get("metadata", []) or []:
            if isinstance(entry, dict) and "acknowledged" in str(entry.get("type", "")).lower():
                for rule, reason in (entry.get("data") or {}).items():
                    reasons.append((node.get("path", ""), rule, reason))
        for child in (node.get("children") or {}).values():
            walk(child)

    walk(tree["tree"])
    if not reasons:  # tree.json may not carry metadata; read it from the construct metadata files
        for meta in synthesized.outdir.rglob("*.metadata.json"):
            for path, entries in json.loads(meta.read_text()).items():
                for entry in entries:
                    if "acknowledged" in entry["type"].lower():
                        reasons += [(path, rule, reason) for rule, reason in entry["data"].items()]
    assert reasons, "expected the IAM5 acknowledgements of the service roles"
    for path, rule, reason in reasons:
        assert "AwsSolutions-" in rule, (path, rule)
        assert reason.strip().lower() not in GENERIC_REASONS and len(reason) > 60, (path, rule, reason)


def test_cfn_lint_finds_no_error_or_warning(synthesized: Synthesized) -> None:
    from cfnlint.api import ManualArgs, lint_file

    templates = sorted(Path(p["template_path"]) for p in synthesized.stacks.values())
    # 3 stages x 3 stacks, the delivery stack, its 2 stages x 4 stacks (with the delivery-access roles)
    assert len(templates) == 9 + 1 + 2 * 4
    for template in templates:
        matches = lint_file(template, ManualArgs(ignore_checks=["W3005"], regions=["us-east-1", "us-west-2"]))
        assert [str(m) for m in matches] == [], template.name
