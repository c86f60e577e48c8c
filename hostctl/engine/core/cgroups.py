"""Customer cgroups on this server: read the live values, plan the difference, create and write. 

The control side decides (``hostctl/cgroups.py``) which directories and limit
files a customer's cgroup has (a ``CustomerCgroup``); the engine compares that
with the live cgroup filesystem and performs the ``CgroupChange`` values, in
order (parents first), before any vassal is written, so a vassal never starts
outside its customer's limits. Changing a limit rewrites the limit file; no
vassal is reloaded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal, Mapping, Sequence

from hostctl.engine.core.errors import EngineError

UNLIMITED_V1 = 1 << 62  # v1 reads "no limit" back as a number near 2**63


@dataclass(frozen=True)
class Write:
    path: str
    value: str
    enable: bool = False  # cgroup.subtree_control: satisfied when every named controller is listed
    optional: bool = False  # the kernel may lack the file (memory.swap.max without swap accounting)


@dataclass(frozen=True)
class CustomerCgroup:
    customer: str
    dirs: tuple[str, ...]  # parents first
    writes: tuple[Write, ...]  # in order
    notes: tuple[str, ...] = ()  # limits that are set but cannot be enforced here

    def to_dict(self) -> dict:
        return {"dirs": list(self.dirs), "writes": [[w.path, w.value, w.enable, w.optional] for w in self.writes]}

    @classmethod
    def from_dict(cls, customer: str, data: Mapping) -> "CustomerCgroup":
        return cls(customer, tuple(data.get("dirs", ())), tuple(Write(str(p), str(v), bool(e), bool(o)) for p, v, e, o in data.get("writes", ())))


@dataclass(frozen=True)
class CgroupChange:
    action: Literal["mkdir", "write", "rmdir"]
    path: str
    before: str | None = None
    after: str | None = None
    enable: bool = False
    optional: bool = False

    def describe(self) -> str:
        if self.action == "write":
            return f"{self.path}: {self.before.strip() if self.before is not None else '(new)'} -> {self.after}"
        return self.path


def satisfied(write: Write, current: str | None) -> bool:
    """Whether the live value of ``write.path`` already is what ``write`` would make it."""
    if current is None:
        return False
    current = current.strip()
    if write.enable:
        return {t.lstrip("+") for t in write.value.split()} <= set(current.split())
    if write.value == "-1" and current.lstrip("-").isdigit():
        return int(current) == -1 or int(current) >= UNLIMITED_V1
    return current == write.value


def plan(desired: Sequence[CustomerCgroup], live: Mapping[str, str | None], present: Sequence[str]) -> tuple[CgroupChange, ...]:
    """What to change so that the live cgroups match ``desired`` (pure).

    ``live`` maps every directory (to "" when it exists) and limit file to its
    current content (None: absent); ``present`` lists the customer cgroups that
    exist now, so those of departed customers are removed.
    """
    changes: list[CgroupChange] = []
    seen: set[str] = set()
    for cg in desired:
        for d in cg.dirs:
            if d not in seen and live.get(d) is None:
                changes.append(CgroupChange("mkdir", d))
            seen.add(d)
        for w in cg.writes:
            if w.path in seen:
                continue
            seen.add(w.path)
            if not satisfied(w, live.get(w.path)):
                changes.append(CgroupChange("write", w.path, live.get(w.path), w.value, w.enable, w.optional))
    changes += [CgroupChange("rmdir", d) for d in sorted(present) if d not in seen]
    return tuple(changes)


def read_value(path: str) -> str | None:
    """A small cgroup file's content (os-level: this runs for every limit file of every customer)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        return os.read(fd, 65536).decode("ascii", errors="replace")
    finally:
        os.close(fd)


def read_live(desired: Sequence[CustomerCgroup], parents: Sequence[str]) -> tuple[dict[str, str | None], list[str]]:
    """Current values of every directory and file in ``desired``, and the customer cgroups present under ``parents``."""
    live: dict[str, str | None] = {}
    for cg in desired:
        for w in cg.writes:
            if w.path in live:  # the parent's memory budget: one file shared by every customer
                continue
            value = read_value(w.path)
            live[w.path] = value
            if value is not None:  # its directory exists: no need to stat it
                live[w.path.rpartition("/")[0]] = ""
        for d in cg.dirs:
            if d not in live:
                live[d] = "" if os.path.isdir(d) else None
    present = []
    for base in parents:
        try:
            present += [e.path for e in os.scandir(base) if e.is_dir(follow_symlinks=False)]
        except FileNotFoundError:
            pass
    return live, present


def _write(path: str, value: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, value.encode("ascii"))  # one write(2): cgroup files take one value per write
    finally:
        os.close(fd)


def apply(changes: Sequence[CgroupChange]) -> list[str]:
    """Perform planned changes in order; raise on a failed write, note a cgroup that cannot be removed yet."""
    messages = []
    for change in changes:
        try:
            if change.action == "mkdir":
                os.makedirs(change.path, 0o755, exist_ok=True)
            elif change.action == "write":
                _write(change.path, change.after or "")
            else:
                os.rmdir(change.path)
        except OSError as exc:
            if change.optional:
                messages.append(f"{change.path} is not available here ({exc.strerror}); left as the kernel has it")
                continue
            if change.action == "rmdir":
                messages.append(f"cgroup {change.path} was not removed ({exc.strerror}); a later apply retries once its processes are gone")
                continue
            what = f"write {change.after!r} to {change.path}" if change.action == "write" else f"create {change.path}"
            raise EngineError(f"could not {what}: {exc.strerror}; no vassal or server block was written") from exc
    return messages
