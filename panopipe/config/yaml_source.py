"""Reading a config file strictly: UTF-8 text, YAML without duplicate keys, of bounded size.

PyYAML's ``safe_load`` keeps the last of two equal keys without a word (a second ``runs:`` section
silently replaces the first), and expands aliases without limit when the data is walked (a 1 KB
"billion laughs" file becomes 10^9 values). :func:`read_yaml` refuses both, naming the line, and
turns every other failure to read or parse the file into one :class:`Problem` instead of a traceback.

Aliases are not refused outright: sharing a value (``classes: &classes [...]`` then
``classes_of_interest: *classes``) is legitimate. What is refused is a document whose values,
every alias expanded, number more than :data:`MAX_VALUES` or nest deeper than :data:`MAX_DEPTH`:
counted once per distinct node on the composed graph, before anything is constructed, so the check
costs the size of the file, not of its expansion. A complete configuration has about 150 values
and nests 4 levels deep.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from panopipe.config.problems import ConfigError, Problem

#: Most values (scalars, lists and mappings, aliases expanded) one config file may hold.
MAX_VALUES = 10_000
#: Deepest nesting of lists and mappings (aliases expanded).
MAX_DEPTH = 32
#: Largest config file read; one is a few KB.
MAX_FILE_BYTES = 1024 * 1024


class YamlRefused(Exception):
    """The document is refused before it is constructed: duplicate keys, or too large once expanded."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(map(str, problems)))
        self.problems = problems


def read_yaml(path: Path) -> Any:
    """The file's single YAML document, or :class:`ConfigError` with one line per problem."""
    source = str(path)
    try:
        with path.open("rb") as stream:
            raw = stream.read(MAX_FILE_BYTES + 1)
    except OSError as err:
        raise ConfigError(source, [Problem("<file>", source, f"cannot be read: {err.strerror}")]) from None
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigError(
            source, [Problem("<file>", source, f"is larger than {MAX_FILE_BYTES} bytes; a config file is a few KB")]
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(source, [Problem("<file>", source, _not_utf8(raw, err))]) from None
    try:
        return yaml.load(text, Loader=StrictLoader)
    except YamlRefused as refused:
        raise ConfigError(source, refused.problems) from None
    except yaml.reader.ReaderError as err:
        rule = f"is not text YAML accepts: character #x{err.character:04x} at position {err.position} (a binary file?)"
        raise ConfigError(source, [Problem("<file>", source, rule)]) from None
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        raise ConfigError(source, [Problem("<file>", where, f"is not valid YAML: {err.problem or err}")]) from None
    except yaml.YAMLError as err:
        raise ConfigError(source, [Problem("<file>", source, f"is not valid YAML: {err}")]) from None


def _not_utf8(raw: bytes, err: UnicodeDecodeError) -> str:
    rule = f"is not UTF-8 text (byte 0x{raw[err.start]:02x} at position {err.start})"
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return f"{rule}: it looks like UTF-16; save it as UTF-8"
    if b"\x00" in raw[:1024]:
        return f"{rule}: it looks like a binary file"
    return f"{rule}: save it as UTF-8"


class StrictLoader(yaml.SafeLoader):
    """``SafeLoader`` that refuses duplicate keys, alias bombs, deep nesting, and reports bad scalars."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._aliases = False

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        """Compose one node, refusing nesting deeper than :data:`MAX_DEPTH` (PyYAML recurses here)."""
        if self.check_event(AliasEvent):
            self._aliases = True
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise ComposerError(None, None, f"values nest more than {MAX_DEPTH} levels deep", mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def get_single_node(self) -> Node | None:
        """The document's node graph, checked before anything is constructed from it."""
        node: Node | None = super().get_single_node()
        if node is not None:
            problems = _GraphCheck(self._aliases).run(node)
            if problems:
                raise YamlRefused(problems)
        return node

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        """Construct one value; a scalar Python refuses (a 5000-digit integer, 2024-02-30) names its line."""
        try:
            return super().construct_object(node, deep)
        except yaml.YAMLError:
            raise
        except (ValueError, OverflowError) as err:
            raise ConstructorError(None, None, f"cannot read this value: {err}", node.start_mark) from None


class _TooLarge(Exception):
    def __init__(self, problem: Problem) -> None:
        super().__init__(str(problem))
        self.problem = problem


class _GraphCheck:
    """Duplicate keys, and the document's size and depth with every alias expanded."""

    def __init__(self, aliases: bool) -> None:
        self.aliases = aliases
        self.measured: dict[int, tuple[int, int]] = {}  # id(node) -> (values, height), each node once
        self.open: set[int] = set()
        self.problems: list[Problem] = []

    def run(self, root: Node) -> list[Problem]:
        try:
            self.visit(root, "", 1)
        except _TooLarge as refused:
            self.problems.append(refused.problem)
        return self.problems

    def visit(self, node: Node, path: str, depth: int) -> tuple[int, int]:
        key = id(node)
        field = path or "<root>"
        if key in self.measured:
            values, height = self.measured[key]
            if depth + height - 1 > MAX_DEPTH:
                raise _TooLarge(Problem(field, _line(node), self._rule(f"nests more than {MAX_DEPTH} levels deep")))
            return values, height
        if key in self.open:
            raise _TooLarge(Problem(field, _line(node), "a YAML alias refers to a value that contains it"))
        if depth > MAX_DEPTH:
            raise _TooLarge(Problem(field, _line(node), self._rule(f"nests more than {MAX_DEPTH} levels deep")))
        self.open.add(key)
        values, height = 1, 0
        children: list[tuple[Node, str]] = []
        if isinstance(node, MappingNode):
            self._duplicates(node, path)
            for key_node, value_node in node.value:
                name = key_node.value if isinstance(key_node, ScalarNode) else "?"
                children += [(key_node, field), (value_node, f"{path}.{name}" if path else str(name))]
        elif isinstance(node, SequenceNode):
            children = [(item, f"{field}[{i}]") for i, item in enumerate(node.value)]
        for child, child_path in children:
            child_values, child_height = self.visit(child, child_path, depth + 1)
            values, height = values + child_values, max(height, child_height)
            if values > MAX_VALUES:
                raise _TooLarge(Problem(field, _line(node), self._rule(f"holds more than {MAX_VALUES} values")))
        self.open.discard(key)
        self.measured[key] = (values, height + 1)
        return self.measured[key]

    def _rule(self, what: str) -> str:
        if self.aliases:
            return f"{what} once its YAML aliases are expanded (an alias bomb?); a config file needs far fewer"
        return f"{what}; a config file needs far fewer"

    def _duplicates(self, node: MappingNode, path: str) -> None:
        first: dict[tuple[str, str], Node] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, ScalarNode):
                continue
            identity = (key_node.tag, key_node.value)
            if identity not in first:
                first[identity] = key_node
                continue
            self.problems.append(
                Problem(
                    f"{path}.{key_node.value}" if path else str(key_node.value),
                    _line(key_node),
                    f"key given twice in one mapping (first on line {first[identity].start_mark.line + 1}); "
                    "YAML would silently keep only the last: remove one",
                )
            )


def _line(node: Node) -> str:
    return f"line {node.start_mark.line + 1}"
