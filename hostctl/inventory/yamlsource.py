"""Read one YAML file into plain data plus the line of every key.

PyYAML's constructors drop positions, so we compose the node tree (with the C
loader when available: it keeps marks and is ~10x faster) and build the data
ourselves, recording ``path -> line`` for every mapping key and sequence item.
Validation errors then name the exact line of the offending field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

try:  # libyaml ships in PyYAML's wheels; fall back to the pure-Python loader.
    from yaml import CSafeLoader as _Loader
except ImportError:  # pragma: no cover
    from yaml import SafeLoader as _Loader  # type: ignore[assignment]

from hostctl.errors import Problem

Path = tuple[Any, ...]


@dataclass(frozen=True)
class Source:
    """A parsed YAML file: its data and where each field was written."""

    file: str  # as shown to the user (relative to the inventory)
    data: Any
    lines: dict[Path, int] = field(default_factory=dict)

    def line_of(self, path: Path) -> int | None:
        """The line of ``path``, or of its closest ancestor that has one."""
        path = tuple(path)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), None)

    def problem(self, path: Path, message: str) -> Problem:
        return Problem(self.file, self.line_of(path), format_path(path), message)


def format_path(path: Path) -> str:
    """``('apps', 'web', 'domains', 1)`` -> ``apps.web.domains[1]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


_PLAIN_TAGS = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")
MAX_NODES = 100_000  # far more than any customer file needs


class _TooBig(Exception):
    def __init__(self, line: int):
        self.line = line


class _Builder:
    def __init__(self, file: str):
        self.budget = MAX_NODES
        self.file = file
        self.lines: dict[Path, int] = {}
        self.problems: list[Problem] = []
        self._constructor = _scalar_constructor()

    def build(self, node: yaml.Node, path: Path) -> Any:
        self.budget -= 1
        if self.budget < 0:  # aliases can expand a small file into billions of nodes
            raise _TooBig(node.start_mark.line + 1)
        if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) and node.tag not in _PLAIN_TAGS:
            self.problems.append(Problem(self.file, node.start_mark.line + 1, format_path(path),
                                         f"the YAML tag {node.tag!r} is not supported"))
        if isinstance(node, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    self.problems.append(Problem(self.file, key_node.start_mark.line + 1,
                                                 format_path(path), "YAML merge keys ('<<') are not supported"))
                    continue
                if not isinstance(key_node, yaml.ScalarNode):
                    self.problems.append(Problem(self.file, key_node.start_mark.line + 1,
                                                 format_path(path), "a key must be a plain string"))
                    continue
                key = self._scalar(key_node)
                if not isinstance(key, str):
                    key = str(key_node.value)
                child = path + (key,)
                if key in out:
                    self.problems.append(Problem(self.file, key_node.start_mark.line + 1,
                                                 format_path(child), f"duplicate key {key!r}"))
                self.lines[child] = key_node.start_mark.line + 1
                out[key] = self.build(value_node, child)
            return out
        if isinstance(node, yaml.SequenceNode):
            items = []
            for index, item in enumerate(node.value):
                child = path + (index,)
                self.lines[child] = item.start_mark.line + 1
                items.append(self.build(item, child))
            return items
        return self._scalar(node)

    def _scalar(self, node: yaml.Node) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            return self._constructor.construct_object(node)  # raises for unknown tags, as PyYAML does
        build = self._constructor.yaml_constructors.get(node.tag)
        if build is None:
            return self._constructor.construct_object(node)
        return build(self._constructor, node)


_CONSTRUCTOR: Any = None


def _scalar_constructor() -> Any:
    """One loader, made once, whose constructors turn scalar nodes into values (they keep no state)."""
    global _CONSTRUCTOR
    if _CONSTRUCTOR is None:
        _CONSTRUCTOR = _Loader("")
    return _CONSTRUCTOR


def parse(text: bytes | str, file: str) -> tuple[Source | None, list[Problem]]:
    """Parse YAML ``text``; return the source, or the problems that stop parsing."""
    if isinstance(text, bytes):
        if b"\0" in text:
            return None, [Problem(file, None, "", "is a binary file, not YAML")]
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            return None, [Problem(file, None, "", f"is not UTF-8 text ({exc.reason} at byte {exc.start})")]
    try:
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        reason = " ".join(str(p) for p in (exc.context, exc.problem) if p)
        return None, [Problem(file, line, "", f"is not valid YAML: {reason}")]
    except yaml.YAMLError as exc:
        return None, [Problem(file, None, "", f"is not valid YAML: {exc}")]
    if node is None:
        return Source(file, None, {(): 1}), []
    builder = _Builder(file)
    try:
        data = builder.build(node, ())
    except yaml.YAMLError as exc:  # e.g. an unknown tag such as !!python/object
        mark = getattr(exc, "problem_mark", None)
        return None, [Problem(file, mark.line + 1 if mark else None, "", f"is not valid YAML: {exc}")]
    except _TooBig as exc:
        return None, [Problem(file, exc.line, "", f"expands to more than {MAX_NODES} YAML nodes (aliases?); not loaded")]
    builder.lines.setdefault((), node.start_mark.line + 1)
    return Source(file, data, builder.lines), builder.problems
