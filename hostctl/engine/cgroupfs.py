"""The cgroup facts of this machine: which hierarchies it has, and each customer's live figures.

Every decision is made in ``render/cgroups.py``; creating cgroups and writing limits
is the engine's (``hostctl/engine/core/cgroups.py``, also on remote servers).
"""

from __future__ import annotations

import os

from hostctl.render import cgroups
from hostctl.render.cgroups import CgroupChange, CustomerCgroup, Facts, Hierarchy, Usage
from hostctl.engine.core import cgroups as engine_cgroups
from hostctl.engine.core.cgroups import read_value as _read
from hostctl.errors import from_engine
from hostctl.inventory.schema import CgroupSettings, Settings

MOUNTS = "/proc/self/mounts"


def probe(cfg: CgroupSettings, euid: int | None = None, mounts: str = MOUNTS) -> Facts:
    """What the host offers: v1 controller directories, the v2 root and its controllers."""
    v1, v2_root = cgroups.locate(cfg, _read(mounts) or "")
    present = {c: d for c, d in v1.items() if os.path.isdir(d)}
    controllers = _read(os.path.join(v2_root, "cgroup.controllers")) if v2_root else None
    euid = os.geteuid() if euid is None else euid
    return Facts(euid == 0, present, v2_root if controllers is not None else None, frozenset((controllers or "").split()))


def hierarchy(settings: Settings, euid: int | None = None, per_customer: bool = True) -> tuple[Hierarchy, list[str]]:
    return cgroups.decide(settings.cgroup, probe(settings.cgroup, euid), per_customer)


def read_live(desired: list[CustomerCgroup], h: Hierarchy) -> tuple[dict[str, str | None], list[str]]:
    """Current values of every directory and file in ``desired``, and the customer cgroups present."""
    return engine_cgroups.read_live(desired, cgroups.customer_dirs(h))


def apply(changes: tuple[CgroupChange, ...]) -> list[str]:
    """Perform planned changes (the engine's step), its errors as ``HostctlError``."""
    with from_engine():
        return engine_cgroups.apply(changes)


def _int(text: str | None) -> int | None:
    if text is None:
        return None
    text = text.strip()
    if text == "max":
        return None
    value = int(text)
    return None if value >= cgroups.UNLIMITED_V1 else value


def _field(text: str | None, key: str) -> int | None:
    for line in (text or "").splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            return int(value)
    return None


def usage(h: Hierarchy, customer: str) -> Usage | None:
    """Live figures of a customer's cgroup, or None when it does not exist."""
    mem_dir = h.leaf(customer, "memory")
    if h.version == "v1":
        if mem_dir is None or not os.path.isdir(mem_dir):
            return None
        cpu_dir, pids_dir = h.leaf(customer, "cpu"), h.leaf(customer, "pids")
        quota = _read(f"{cpu_dir}/cpu.cfs_quota_us") if cpu_dir else None
        period = _read(f"{cpu_dir}/cpu.cfs_period_us") if cpu_dir else None
        cpu = int(quota) / int(period) if quota and period and int(quota) > 0 else None
        return Usage(mem_dir, _int(_read(f"{mem_dir}/memory.usage_in_bytes")), _int(_read(f"{mem_dir}/memory.limit_in_bytes")),
                     _field(_read(f"{mem_dir}/memory.oom_control"), "oom_kill"),
                     _int(_read(f"{pids_dir}/pids.current")) if pids_dir else None,
                     _int(_read(f"{pids_dir}/pids.max")) if pids_dir else None, cpu)
    if h.version == "v2":
        if mem_dir is None or not os.path.isdir(mem_dir):
            return None
        cpu_max = (_read(f"{mem_dir}/cpu.max") or "max").split()
        cpu = int(cpu_max[0]) / int(cpu_max[1]) if len(cpu_max) == 2 and cpu_max[0] != "max" else None
        return Usage(mem_dir, _int(_read(f"{mem_dir}/memory.current")), _int(_read(f"{mem_dir}/memory.max")),
                     _field(_read(f"{mem_dir}/memory.events"), "oom_kill"),
                     _int(_read(f"{mem_dir}/pids.current")), _int(_read(f"{mem_dir}/pids.max")), cpu)
    return None


def memory(settings: Settings, customer: str) -> tuple[int, int | None] | None:
    """(usage, limit) in bytes of the customer's cgroup; limit None when unlimited; None without a cgroup."""
    h, _ = hierarchy(settings, euid=0)  # reading needs no root; decide where the cgroups would be
    found = usage(h, customer)
    if found is None or found.memory is None:
        return None
    return found.memory, found.memory_limit
