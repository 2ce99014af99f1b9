"""Reading the config file: duplicate keys, alias bombs, encodings and paths, each one clear problem line."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from panopipe.config import ConfigError, load_config, parse_config
from panopipe.config.problems import Problem, bounded_repr
from panopipe.config.yaml_source import MAX_DEPTH, MAX_VALUES
from tests.conftest import ROOT
from tests.test_cli_synth import _clean_env
from tests.test_config import SCRIPT

DEV_TEXT = (ROOT / "config" / "dev.yaml").read_text()


def _problems_of(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path, base_dir=ROOT)
    assert str(caught.value).startswith(f"invalid configuration {path} (")
    return [str(p) for p in caught.value.problems]


def _line_of(text: str, needle: str, occurrence: int = 1) -> int:
    lines = [i for i, line in enumerate(text.splitlines(), 1) if line.startswith(needle)]
    return lines[occurrence - 1]


# --- 1. duplicate keys --------------------------------------------------------------------------


def test_a_second_section_is_refused_naming_both_lines(tmp_path: Path) -> None:
    text = DEV_TEXT + "runs:\n  poll_seconds: 5\nstorage:\n  access_log_days: 30\nruns:\n  schedule: rate(1 day)\n"
    path = tmp_path / "twice.yaml"
    path.write_text(text)
    first, second = _line_of(text, "runs:"), _line_of(text, "runs:", 2)
    assert _problems_of(path) == [
        f"runs = 'line {second}': key given twice in one mapping (first on line {first}); "
        "YAML would silently keep only the last: remove one"
    ]


def test_keys_repeated_inside_sections_and_list_items_are_all_reported(tmp_path: Path) -> None:
    text = DEV_TEXT.replace("    threshold: 0.8\n", "    threshold: 0.8\n    threshold: 0.5\n").replace(
        "  - name: local-device-1\n", "  - name: local-device-1\n    name: local-device-2\n"
    )
    text += '"project": other\n'  # quoted or not, the same key
    path = tmp_path / "twice.yaml"
    path.write_text(text)
    problems = _problems_of(path)
    assert [p.split(" = ")[0] for p in problems] == ["project", "training.metric.threshold", "devices[0].name"]
    assert problems[1] == (
        f"training.metric.threshold = 'line {_line_of(text, '    threshold: 0.5')}': key given twice in one mapping "
        f"(first on line {_line_of(text, '    threshold: 0.8')}); YAML would silently keep only the last: remove one"
    )


def test_a_merge_key_may_be_overridden_and_aliases_may_share_a_value(tmp_path: Path) -> None:
    text = DEV_TEXT.replace("  classes: [empty, person]\n", "  classes: &classes [empty, person]\n")
    text = text.replace("training:\n", "training:\n  <<: {spot: false, instance_count: 3}\n")
    text += "application:\n  classes_of_interest: *classes\n"
    path = tmp_path / "aliases.yaml"
    path.write_text(text)
    config = load_config(path, base_dir=ROOT)
    assert config.application.classes_of_interest == ("empty", "person")
    assert config.training.instance_count == 1 and config.training.spot is True, "the mapping's own keys win"


# --- 10. alias bombs, deep nesting, and problem lines of bounded size ---------------------------

BILLION_LAUGHS = textwrap.dedent(
    """\
    project: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
    b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
    c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
    d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
    e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
    f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
    g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
    h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
    model: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
    training: *i
    cameras: *i
    """
)


def test_an_alias_bomb_is_refused_before_it_expands(tmp_path: Path) -> None:
    """Six of the nine levels (531441 values once expanded), so that even unfixed this test stays small."""
    path = tmp_path / "lol.yaml"
    path.write_text("".join(BILLION_LAUGHS.splitlines(keepends=True)[:6]) + "model: *f\n")
    tracemalloc.start()
    started = time.perf_counter()
    try:
        problems = _problems_of(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - started < 5
    assert peak < 2_000_000, f"{peak} bytes traced"
    assert problems == [
        f"e = 'line 5': holds more than {MAX_VALUES} values once its YAML aliases are expanded (an alias bomb?); "
        "a config file needs far fewer"
    ]


def test_the_alias_bomb_stays_small_in_a_fresh_process(tmp_path: Path) -> None:
    """The 1.2 KB file, in a process limited to 1 GiB of address space (unfixed, the load grows past 3 GB)."""
    path = tmp_path / "lol.yaml"
    path.write_text(BILLION_LAUGHS)
    code = textwrap.dedent(
        f"""\
        import resource, sys
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
        from panopipe.config import ConfigError, load_config
        try:
            load_config({str(path)!r})
        except ConfigError as error:
            sys.exit(f"error: {{error}}")
        """
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and "MemoryError" not in result.stderr
    assert "holds more than 10000 values once its YAML aliases are expanded" in result.stderr


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("project: &a [1, *a]\n", "project[1] = 'line 1': a YAML alias refers to a value that contains it"),
        ("x: &r {a: 1, b: *r}\n", "x.b = 'line 1': a YAML alias refers to a value that contains it"),
        (
            "model: " + "[" * 500 + "]" * 500 + "\n",
            f"<file> = 'line 1, column {len('model: ') + MAX_DEPTH}': is not valid YAML: values nest more than "
            f"{MAX_DEPTH} levels deep",
        ),
        (
            "".join(f"l{i}: &l{i} [[[[[[[[*l{i - 1}]]]]]]]]\n" for i in range(1, 6)).replace("*l0", "1"),
            # reached at l4[0]...[0] (depth 10), the anchor l3 defined on line 3 is 25 levels deep
            "l4[0][0][0][0][0][0][0][0] = 'line 3': nests more than 32 levels deep once its YAML aliases are "
            "expanded (an alias bomb?)",
        ),
        (
            "model:\n  classes: [" + ", ".join(f"c{i}" for i in range(MAX_VALUES + 1)) + "]\n",
            f"model.classes = 'line 2': holds more than {MAX_VALUES} values; a config file needs far fewer",
        ),
    ],
    ids=["recursive-list", "recursive-mapping", "deep-literal", "deep-through-aliases", "too-many-values"],
)
def test_values_too_large_or_recursive_are_refused_in_one_line(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "big.yaml"
    path.write_text(text)
    (problem,) = _problems_of(path)
    assert problem.startswith(expected), problem


def test_a_problem_line_never_renders_a_huge_value_whole() -> None:
    huge: list[Any] = list(range(1_000_000))
    nested: list[Any] = [{"k": "x" * 10_000_000}, 10**100_000, huge]
    nested.append(nested)
    values = (huge, nested, "y" * 10_000_000, {i: i for i in range(1_000_000)})
    tracemalloc.start()
    try:
        lines = [str(Problem("model.classes", value, "rule")) for value in values]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 100_000, f"{peak} bytes traced while rendering"
    assert all(len(line) <= len("model.classes = ") + 80 + len(": rule") for line in lines), lines
    assert (
        lines[0]
        == "model.classes = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21...: rule"
    )
    assert bounded_repr([1, "a", (2,), {"k": None}]) == repr([1, "a", (2,), {"k": None}])
    assert bounded_repr(10**5000) == "<16610-bit integer>"


def test_a_huge_value_in_a_parsed_mapping_is_reported_briefly() -> None:
    data = dict(SCRIPT, surprise=list(range(1_000_000)))
    with pytest.raises(ConfigError) as caught:
        parse_config(data, "config/bad.yaml", base_dir=ROOT)
    (line,) = str(caught.value).splitlines()[1:]
    assert line.startswith("  - surprise = [0, 1, 2, 3,") and "...: unknown field" in line and len(line) < 300


# --- 9. encodings and bytes that are not YAML text ----------------------------------------------


@pytest.mark.parametrize(
    ("content", "rule"),
    [
        (b"project: caf\xe9\n", "is not UTF-8 text (byte 0xe9 at position 12): save it as UTF-8"),
        (
            b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
            "is not UTF-8 text (byte 0x89 at position 0): it looks like a binary file",
        ),
        (
            DEV_TEXT.encode("utf-16"),
            "is not UTF-8 text (byte 0xff at position 0): it looks like UTF-16; save it as UTF-8",
        ),
        (b"project: a\x00b\n", "is not text YAML accepts: character #x0000 at position 10 (a binary file?)"),
    ],
    ids=["latin-1", "png", "utf-16", "nul"],
)
def test_a_file_that_is_not_utf8_yaml_text_is_one_problem_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: bytes, rule: str
) -> None:
    monkeypatch.chdir(tmp_path)  # a short name: long values are shortened in messages, whatever TMPDIR is
    path = Path("x.yaml")
    path.write_bytes(content)
    assert _problems_of(path) == [f"<file> = {str(path)!r}: {rule}"]


def test_a_utf8_file_with_a_byte_order_mark_is_read(tmp_path: Path) -> None:
    path = tmp_path / "bom.yaml"
    path.write_bytes(DEV_TEXT.encode("utf-8-sig"))
    assert load_config(path, base_dir=ROOT).project == "panopipe"


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        ("1" * 5000, "cannot read this value: Exceeds the limit (4300 digits) for integer string conversion"),
        ("2024-02-30", "cannot read this value: day is out of range for month"),
    ],
)
def test_a_scalar_python_cannot_build_is_one_problem_line(tmp_path: Path, value: str, rule: str) -> None:
    path = tmp_path / "x.yaml"
    path.write_text(DEV_TEXT + f"notification_email: {value}\n")
    (problem,) = _problems_of(path)
    line = len(DEV_TEXT.splitlines()) + 1
    assert problem.startswith(f"<file> = 'line {line}, column 21': is not valid YAML: {rule}"), problem


def test_a_file_larger_than_any_config_is_refused_unread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # a short name: long values are shortened in messages, whatever TMPDIR is
    path = Path("large.yaml")
    path.write_text(DEV_TEXT + "#" * (2 * 1024 * 1024) + "\n")
    assert _problems_of(path) == [f"<file> = {str(path)!r}: is larger than 1048576 bytes; a config file is a few KB"]


# --- 11. paths inside the config resolve against the project, whatever the current directory ----


def test_paths_in_the_config_resolve_against_the_project_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from panopipe.config.loader import PROJECT_ROOT

    assert (PROJECT_ROOT / "pyproject.toml").is_file() and (PROJECT_ROOT / "cdk.json").is_file()
    assert PROJECT_ROOT == ROOT
    monkeypatch.chdir(tmp_path)
    config = load_config(ROOT / "tests" / "configs" / "script.yaml")
    assert config.training.entry_point == "tests/fixtures/train_detector.py"
    assert parse_config(SCRIPT).training.program == "train_detector.py"
    with pytest.raises(ConfigError, match=rf"looked for {ROOT}/tests/fixtures/missing\.py"):
        parse_config(dict(SCRIPT, training=dict(SCRIPT["training"], entry_point="tests/fixtures/missing.py")))


def test_validate_agrees_with_synth_from_any_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from panopipe.cli import app

    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["validate", str(ROOT / "tests" / "configs" / "script.yaml")])
    assert result.exit_code == 0, result.output
    assert "valid (panopipe-ci" in result.output


# --- synth: app.py exits non-zero with one line per problem -------------------------------------


def _report(stderr: str) -> list[str]:
    """app.py's lines (the jsii runtime may add warnings of its own)."""
    return [line for line in stderr.splitlines() if line.startswith(("error: ", "  - "))]


def test_synth_refuses_a_file_with_duplicate_keys_and_a_bad_schedule(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(DEV_TEXT + "runs:\n  schedule: rate(1 hours)\n" + "project: other\n")
    env = _clean_env()
    env["CDK_CONTEXT_JSON"] = json.dumps({"config": str(bad)})
    env["CDK_OUTDIR"] = str(tmp_path / "out")
    result = subprocess.run([sys.executable, "app.py"], cwd=ROOT, capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert _report(result.stderr) == [
        f"error: invalid configuration {bad} (1 problem):",
        f"  - project = 'line {len(DEV_TEXT.splitlines()) + 3}': key given twice in one mapping (first on line 3); "
        "YAML would silently keep only the last: remove one",
    ]
    bad.write_text(DEV_TEXT + "runs:\n  schedule: rate(1 hours)\n")
    result = subprocess.run([sys.executable, "app.py"], cwd=ROOT, capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 1
    assert _report(result.stderr)[1:] == [
        "  - runs.schedule = 'rate(1 hours)': a rate of 1 takes the singular unit: rate(1 hour)"
    ]
