"""The plan as values, and how it is made: rendered files against what is live. Pure except ``read_*``.

``make_plan(desired, actual)`` returns a ``Plan``: every file to create, update
or remove, with before/after content, drift (a hand edit to a file hostctl
wrote) and conflicts (a file hostctl did not write where it wants to write).
The control side makes plans for ``plan`` and ``apply``; the engine makes them
itself on a server for a rollback. ``read`` is the only reader of live files
for planning (``LiveFile``/``Actual`` records).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field, replace
from typing import Iterable, Literal, Mapping

from hostctl.engine.core.errors import EngineError
from hostctl.engine.core.manifest import Entry, Manifest, sha256

Action = Literal["create", "update", "delete"]
Kind = Literal["vassal", "nginx", "socket"]  # socket: an on-demand companion of a vassal


@dataclass(frozen=True)
class RenderedFile:
    path: str
    content: str
    kind: Kind
    customer: str
    app: str
    mode: int  # vassals hold env values (secrets): not world-readable


@dataclass(frozen=True)
class LiveFile:
    content: bytes | None  # None: absent
    mode: int | None = None
    not_a_file: bool = False  # something else (a directory, a socket) sits at the path
    digest: str | None = None  # sha256 alone, for a file read over SSH (its content is not fetched)

    @property
    def present(self) -> bool:
        return self.content is not None or self.digest is not None

    def sha256(self) -> str:
        assert self.present
        return self.digest if self.digest is not None else sha256(self.content)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Actual:
    manifest: Manifest
    files: dict[str, LiveFile] = field(default_factory=dict)


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


def changed_customers(plan: Plan) -> list[str]:
    """Customers whose files this plan creates or rewrites (removals cannot break anything)."""
    return sorted({c.customer for c in plan.changes if c.action != "delete"})


def restrict(plan: Plan, old: Manifest, held: Iterable[str]) -> Plan:
    """``plan`` without the creations and rewrites of the ``held`` customers.

    Their manifest entries stay what they were (the live, last-known-good files),
    and files they never had stay out of the manifest.
    """
    held = set(held)
    if not held:
        return plan
    keep, dropped = [], []
    for change in plan.changes:
        (dropped if change.customer in held and change.action != "delete" else keep).append(change)
    files = dict(plan.manifest.files)
    for change in dropped:
        before = old.files.get(change.path)
        if before is None:
            files.pop(change.path, None)
        else:
            files[change.path] = replace(before, previous=None)
    return Plan(tuple(keep), plan.conflicts, Manifest(files), plan.unchanged)


# --- reading what is live -----------------------------------------------------------


def read_file(path: str) -> LiveFile:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return LiveFile(None)
    if not stat.S_ISREG(st.st_mode):
        return LiveFile(None, None, not_a_file=True)
    with open(path, "rb") as fh:
        return LiveFile(fh.read(), stat.S_IMODE(st.st_mode))


def read_manifest(path: str) -> Manifest:
    try:
        with open(path, encoding="utf-8") as fh:
            return Manifest.from_json(fh.read())
    except FileNotFoundError:
        return Manifest()
    except (ValueError, KeyError, TypeError) as exc:
        raise EngineError(f"{path}: the manifest is damaged ({exc}); move it aside to let hostctl rebuild it") from exc


def read(manifest_path: str, paths: Iterable[str]) -> Actual:
    """The manifest plus the current content of ``paths`` and of every file it lists."""
    manifest = read_manifest(manifest_path)
    wanted = set(paths) | set(manifest.files)
    return Actual(manifest, {path: read_file(path) for path in sorted(wanted)})
