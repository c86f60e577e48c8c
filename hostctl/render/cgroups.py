"""Decide how a customer's limits are enforced with cgroups: pure, data in and data out.

One cgroup per customer (``<root>/<parent>/<customer>``), shared by all of its
apps. hostctl creates the cgroups and writes the limit files itself, so a
changed limit takes effect at the next apply without reloading any vassal;
the vassal only *joins* its customer's cgroup:

- cgroup v1: uWSGI's own ``cgroup = <leaf>`` (one per controller), which runs
  as root before the vassal drops to the customer's user. Only the leaf is
  given to uWSGI: it writes every ``cgroup-opt`` into every listed directory,
  so parents are hostctl's job.
- cgroup v2, which uWSGI cannot join (it writes ``tasks``, unbit/uwsgi#2504):
  ``exec-as-root = echo $PPID > <leaf>/cgroup.procs``. The shell's parent is the
  vassal's master, still root, before it forks any worker.

The edge (``cgroupfs.py``) gathers ``Facts`` about the host; the engine
(``hostctl/engine/core/cgroups.py``) compares a ``CustomerCgroup`` with the live
cgroup filesystem of the server it runs on and performs the ``CgroupChange``s. ``cgroup_memory`` is the reader other
commands (status, limits) use.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Literal, Mapping, Sequence

from hostctl.engine.core.cgroups import UNLIMITED_V1, CgroupChange, CustomerCgroup, Write, plan, satisfied  # noqa: F401
from hostctl.inventory.schema import CgroupSettings, Limits, Settings

V1_CONTROLLERS = ("memory", "cpu", "pids")
V2_CONTROLLERS = ("cpu", "memory", "pids")
CPU_PERIOD_US = 100_000
CPU_MIN_QUOTA_US = 1_000  # the kernel refuses smaller quotas
PAGE = 4096  # the kernel rounds byte limits down to whole pages


@dataclass(frozen=True)
class Facts:
    """What the edge found on the host (``cgroupfs.probe``)."""

    root: bool  # hostctl runs as root (only root may create cgroups and attach vassals)
    v1: Mapping[str, str] = field(default_factory=dict)  # controller -> its v1 mount directory, where it exists
    v2_root: str | None = None  # the cgroup2 mount, if there is one
    v2_controllers: frozenset[str] = frozenset()  # from <v2_root>/cgroup.controllers


@dataclass(frozen=True)
class Hierarchy:
    """The decision: which hierarchy enforces limits, and where customer cgroups live."""

    version: Literal["v1", "v2"] | None
    parent: str = "hostctl"
    v1: Mapping[str, str] = field(default_factory=dict)  # controller -> mount directory (v1)
    v2_root: str | None = None
    controllers: frozenset[str] = frozenset()  # what can be limited
    why_off: str | None = None  # version None: why limits are not enforced
    memory_budget: int | None = None  # bytes for all customers together (the parent's own limit); None: none

    def leaf(self, customer: str, controller: str = "memory") -> str | None:
        """The customer's cgroup directory (for ``controller`` on v1), or None when not enforced."""
        if self.version == "v2" and self.v2_root:
            return os.path.join(self.v2_root, self.parent, customer)
        if self.version == "v1" and controller in self.v1:
            return os.path.join(self.v1[controller], self.parent, customer)
        return None

    def describe(self) -> str:
        if self.version is None:
            return f"cgroup limits are not enforced: {self.why_off}"
        where = self.v2_root if self.version == "v2" else ", ".join(self.v1[c] for c in V1_CONTROLLERS if c in self.v1)
        return f"cgroup {self.version} ({where}): one cgroup per customer under '{self.parent}/', limiting {', '.join(sorted(self.controllers)) or 'nothing'}"


def v1_mounts(mounts: str) -> dict[str, str]:
    """Controller -> mount point of each v1 controller, from /proc/self/mounts text."""
    found: dict[str, str] = {}
    for line in mounts.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[2] == "cgroup":
            for option in parts[3].split(","):
                if option in V1_CONTROLLERS:
                    found.setdefault(option, _unescape(parts[1]))
    return found


def v2_mount(mounts: str) -> str | None:
    for line in mounts.splitlines():
        parts = line.split()
        if len(parts) >= 3 and parts[2] == "cgroup2":
            return _unescape(parts[1])
    return None


def _unescape(path: str) -> str:
    return path.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


def locate(cfg: CgroupSettings, mounts: str) -> tuple[dict[str, str], str | None]:
    """Where to look: v1 controller directories and the v2 root (settings override the mounts)."""
    v1 = {c: os.path.join(cfg.v1_root, c) for c in V1_CONTROLLERS} if cfg.v1_root else v1_mounts(mounts)
    v2 = cfg.v2_root or v2_mount(mounts)
    return {c: os.path.normpath(d) for c, d in v1.items()}, os.path.normpath(v2) if v2 else None


def decide(cfg: CgroupSettings, facts: Facts, per_customer: bool = True) -> tuple[Hierarchy, list[str]]:
    """The hierarchy that enforces limits, and errors (a forced mode the host cannot do).

    ``auto`` enforces limits where vassals run per customer (production); the
    try-out mode (vassals as the invoking user) leaves the host's cgroups alone
    unless ``cgroup.mode`` names a hierarchy.
    """
    def off(why: str) -> Hierarchy:
        return Hierarchy(None, cfg.parent, why_off=why)

    if cfg.mode == "off":
        return off("cgroup.mode is 'off' in hostctl.yaml"), []
    if cfg.mode == "auto" and not per_customer:
        return off("vassals run as the invoking user and cgroup.mode is 'auto' (set it to 'v1' or 'v2' to enforce limits anyway)"), []
    v2_memory = facts.v2_root is not None and "memory" in facts.v2_controllers
    want = cfg.mode if cfg.mode != "auto" else ("v2" if v2_memory else "v1" if "memory" in facts.v1 else None)
    if want is None:
        return off("no writable memory controller (neither cgroup v2 with 'memory' nor a v1 memory mount)"), []
    if not facts.root:
        why = "hostctl is not root (only root can create cgroups and put vassals in them)"
        return off(why), ([] if cfg.mode == "auto" else [f"{cfg.mode!r} needs root: {why}"])
    if want == "v2":
        if facts.v2_root is None:
            return off("no cgroup v2 hierarchy"), ["'v2': no cgroup2 hierarchy is mounted (or v2_root has no cgroup.controllers)"]
        usable = frozenset(c for c in V2_CONTROLLERS if c in facts.v2_controllers)
        return Hierarchy("v2", cfg.parent, v2_root=facts.v2_root, controllers=usable, memory_budget=cfg.memory_budget), []
    if not facts.v1:
        return off("no cgroup v1 controllers"), ["'v1': no cgroup v1 memory, cpu or pids controller is mounted"]
    v1 = {c: d for c, d in facts.v1.items() if c in V1_CONTROLLERS}
    return Hierarchy("v1", cfg.parent, v1=v1, controllers=frozenset(v1), memory_budget=cfg.memory_budget), []


def _memory(limits: Limits) -> int | None:
    return None if limits.memory is None else max(PAGE, limits.memory // PAGE * PAGE)


def _cpu_quota(limits: Limits) -> int | None:
    return None if limits.cpu is None else max(CPU_MIN_QUOTA_US, round(limits.cpu * CPU_PERIOD_US))


def customer_cgroup(h: Hierarchy, customer: str, limits: Limits) -> CustomerCgroup:
    """The directories and limit files of one customer's cgroup (values of unset limits mean 'no limit')."""
    set_limits = {name for name in ("memory", "cpu", "pids") if getattr(limits, name) is not None}
    notes = tuple(f"limits.{name} is not enforced: " + (h.why_off or f"the {name} controller is not available")
                  for name in sorted(set_limits - h.controllers))
    memory, quota = _memory(limits), _cpu_quota(limits)
    budget = None if h.memory_budget is None else max(PAGE, h.memory_budget // PAGE * PAGE)
    if h.version == "v1":
        dirs, writes = [], []
        for c in V1_CONTROLLERS:
            if c not in h.v1:
                continue
            parent = f"{h.v1[c]}/{h.parent}"
            leaf = f"{parent}/{customer}"
            dirs += [parent, leaf]
            if c == "memory":
                # the parent's own limit is the budget of all customers together (cgroup.memory_budget)
                writes.append(Write(f"{parent}/memory.limit_in_bytes", str(budget) if budget else "-1"))
                writes.append(Write(f"{leaf}/memory.limit_in_bytes", str(memory) if memory else "-1"))
                writes.append(Write(f"{leaf}/memory.swappiness", "0"))  # the limit is RAM: never swap past it
            elif c == "cpu":
                writes.append(Write(f"{leaf}/cpu.cfs_period_us", str(CPU_PERIOD_US)))
                writes.append(Write(f"{leaf}/cpu.cfs_quota_us", str(quota) if quota else "-1"))
            else:
                writes.append(Write(f"{leaf}/pids.max", str(limits.pids) if limits.pids else "max"))
        return CustomerCgroup(customer, tuple(dirs), tuple(writes), notes)
    if h.version == "v2" and h.v2_root:
        parent = f"{h.v2_root}/{h.parent}"
        leaf = f"{parent}/{customer}"
        writes = []
        if h.controllers:
            enable = " ".join(f"+{c}" for c in sorted(h.controllers))
            writes += [Write(f"{h.v2_root}/cgroup.subtree_control", enable, enable=True),
                       Write(f"{parent}/cgroup.subtree_control", enable, enable=True)]
        if "memory" in h.controllers:
            writes.append(Write(f"{parent}/memory.max", str(budget) if budget else "max"))
            writes.append(Write(f"{leaf}/memory.max", str(memory) if memory else "max"))
            writes.append(Write(f"{leaf}/memory.swap.max", "0" if memory else "max", optional=True))
        if "cpu" in h.controllers:
            writes.append(Write(f"{leaf}/cpu.max", f"{quota if quota else 'max'} {CPU_PERIOD_US}"))
        if "pids" in h.controllers:
            writes.append(Write(f"{leaf}/pids.max", str(limits.pids) if limits.pids else "max"))
        return CustomerCgroup(customer, (parent, leaf), tuple(writes), notes)
    return CustomerCgroup(customer, (), (), notes)


def vassal_lines(h: Hierarchy | None, customer: str) -> tuple[tuple[str, str], ...]:
    """uWSGI options that put a vassal's master (and so its workers) into its customer's cgroup."""
    if h is None or h.version is None:
        return ()
    if h.version == "v2":
        return (("exec-as-root", f"echo $PPID > {h.leaf(customer)}/cgroup.procs"),)
    return tuple(("cgroup", os.path.join(h.v1[c], h.parent, customer)) for c in V1_CONTROLLERS if c in h.v1)


def customer_dirs(h: Hierarchy) -> list[str]:
    """The directories that hold customer cgroups (``<root>/<parent>`` per controller)."""
    if h.version == "v2" and h.v2_root:
        return [os.path.join(h.v2_root, h.parent)]
    if h.version == "v1":
        return [os.path.join(h.v1[c], h.parent) for c in V1_CONTROLLERS if c in h.v1]
    return []


def render_changes(changes: Sequence[CgroupChange], notes: Sequence[str] = ()) -> str:
    """The cgroup part of a plan, for a terminal."""
    symbols = {"mkdir": "+", "write": "~", "rmdir": "-"}
    lines = [f"{symbols[c.action]} cgroup {c.describe()}" for c in changes]
    lines += [f"note: {n}" for n in notes]
    return "".join(line + "\n" for line in lines)


@dataclass(frozen=True)
class Usage:
    """One customer's live cgroup figures (None: not limited, or not available)."""

    path: str
    memory: int | None = None
    memory_limit: int | None = None
    oom_kills: int | None = None
    pids: int | None = None
    pids_limit: int | None = None
    cpu: float | None = None  # CPUs the quota allows


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    for unit, shift in (("G", 30), ("M", 20), ("K", 10)):
        if n >= 1 << shift:
            return f"{n / (1 << shift):.1f}{unit}"
    return str(n)


def usage_table(rows: Sequence[tuple[str, Usage | None]]) -> str:
    """``hostctl limits``: each customer's cgroup memory use against its limit, OOM kills, pids and CPU quota."""
    table = [("CUSTOMER", "MEMORY", "LIMIT", "USE%", "OOM-KILLS", "PIDS", "CPU")]
    for name, u in rows:
        if u is None:
            table.append((name, "-", "-", "-", "-", "-", "no cgroup yet (hostctl apply creates it)"))
            continue
        pct = f"{100 * u.memory / u.memory_limit:.0f}%" if u.memory is not None and u.memory_limit else "-"
        pids = f"{u.pids if u.pids is not None else '-'}/{u.pids_limit if u.pids_limit is not None else 'max'}"
        table.append((name, _size(u.memory), _size(u.memory_limit) if u.memory_limit else "max", pct,
                       "-" if u.oom_kills is None else str(u.oom_kills), pids, f"{u.cpu:g}" if u.cpu else "max"))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    return "".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() + "\n" for row in table)
