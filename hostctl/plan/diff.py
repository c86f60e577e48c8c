"""Compare rendered files with what is live and decide what to do: pure.

``make_plan(desired, actual)`` returns a ``Plan`` value: every file to create,
update or remove, with before/after content, drift (a hand edit to a file
hostctl wrote) and conflicts (a file hostctl did not write sitting where it
wants to write). Nothing here touches the disk or the clock.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Literal, Mapping

from hostctl.plan.files import Actual, RenderedFile
from hostctl.plan.manifest import Entry, Manifest, sha256

Action = Literal["create", "update", "delete"]
_ENV_LINE = re.compile(r"^(env = [A-Za-z_][A-Za-z0-9_]*=).*$", re.M)


@dataclass(frozen=True)
class Change:
    action: Action
    path: str
    kind: str
    customer: str
    app: str
    before: str | None
    after: str | None
    mode: int | None = None
    drift: bool = False  # the live file was edited by hand since hostctl wrote it
    mode_only: bool = False


@dataclass(frozen=True)
class Conflict:
    path: str
    reason: str


@dataclass(frozen=True)
class Plan:
    changes: tuple[Change, ...]
    conflicts: tuple[Conflict, ...]
    manifest: Manifest  # what the manifest says once the plan is applied
    unchanged: int = 0

    @property
    def empty(self) -> bool:
        return not self.changes

    @property
    def nginx_changed(self) -> bool:
        return any(c.kind == "nginx" for c in self.changes)

    def count(self, action: Action) -> int:
        return sum(1 for c in self.changes if c.action == action)

    def summary(self) -> str:
        if self.empty:
            return "No changes. The live files match the inventory."
        return f"Plan: {self.count('create')} to add, {self.count('update')} to change, {self.count('delete')} to remove."


def _decode(data: bytes | None) -> str | None:
    return None if data is None else data.decode("utf-8", errors="replace")


def make_plan(desired: Mapping[str, RenderedFile], actual: Actual) -> Plan:
    changes: list[Change] = []
    conflicts: list[Conflict] = []
    entries: dict[str, Entry] = {}
    unchanged = 0
    old = actual.manifest.files
    for path, want in sorted(desired.items()):
        live = actual.files.get(path)
        entry = Entry(sha256(want.content), want.kind, want.customer, want.app)
        if live is not None and live.not_a_file:
            conflicts.append(Conflict(path, "something other than a regular file is in the way"))
            continue
        if live is None or not live.present:
            changes.append(Change("create", path, want.kind, want.customer, want.app, None, want.content, want.mode))
            entries[path] = entry
            continue
        digest = live.sha256()
        managed = old.get(path)
        if managed is None and digest != entry.sha256:
            conflicts.append(Conflict(path, "the file exists but hostctl did not create it; move it away or delete it"))
            continue
        entries[path] = entry
        drift = managed is not None and not managed.accepts(digest)
        if digest == entry.sha256:
            if live.mode != want.mode:
                changes.append(Change("update", path, want.kind, want.customer, want.app, want.content, want.content,
                                      want.mode, drift, mode_only=True))
            else:
                unchanged += 1
            continue
        changes.append(Change("update", path, want.kind, want.customer, want.app, _decode(live.content), want.content, want.mode, drift))
    for path, managed in sorted(old.items()):
        if path in desired:
            continue
        live = actual.files.get(path)
        if live is None or not live.present:
            continue  # already gone; it simply drops out of the manifest
        drift = not managed.accepts(live.sha256())
        changes.append(Change("delete", path, managed.kind, managed.customer, managed.app, _decode(live.content), None, None, drift))
    return Plan(tuple(changes), tuple(conflicts), Manifest(entries), unchanged)


def redact(text: str) -> str:
    """Hide env values (often secrets) from anything shown to a terminal."""
    return _ENV_LINE.sub(r"\1***", text)


def _env_keys_changed(before: str, after: str) -> list[str]:
    def env(text: str) -> dict[str, str]:
        return dict(line[6:].split("=", 1) for line in text.splitlines() if line.startswith("env = ") and "=" in line[6:])

    b, a = env(before), env(after)
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def diff(change: Change) -> str:
    """A unified diff of one change with env values redacted."""
    before = redact(change.before or "")
    after = redact(change.after or "")
    lines = list(difflib.unified_diff(before.splitlines(keepends=True), after.splitlines(keepends=True),
                                      fromfile=change.path if change.before is not None else "/dev/null",
                                      tofile=change.path if change.after is not None else "/dev/null"))
    text = "".join(line if line.endswith("\n") else line + "\n" for line in lines)
    if change.before is not None and change.after is not None:
        hidden = _env_keys_changed(change.before, change.after)
        if hidden:
            text += f"  (env values changed, not shown: {', '.join(hidden)})\n"
    if change.mode_only:
        text += f"  (mode becomes {change.mode:o})\n"
    return text


def render_plan(plan: Plan, show_diff: bool = True) -> str:
    """The plan as text for a terminal: one line per file, then diffs, then the summary."""
    symbols = {"create": "+", "update": "~", "delete": "-"}
    out = []
    for conflict in plan.conflicts:
        out.append(f"! {conflict.path}: {conflict.reason}")
    for change in plan.changes:
        note = "  (drift: edited outside hostctl; apply overwrites it)" if change.drift else ""
        out.append(f"{symbols[change.action]} {change.path}{note}")
    if show_diff:
        for change in plan.changes:
            out.append("")
            out.append(diff(change).rstrip("\n"))
    if plan.changes:
        out.append("")
        if plan.nginx_changed:
            out.append("nginx: a server block changes, so nginx is checked (nginx -t) and reloaded.")
        else:
            out.append("nginx: no server block changes; nginx is not reloaded.")
    out.append(plan.summary())
    return "\n".join(out) + "\n"
