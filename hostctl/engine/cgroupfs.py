"""The cgroup facts of this machine: which hierarchies it has, and each customer's live figures.

Every decision is made in ``render/cgroups.py``; creating cgroups and writing limits
is the engine's (``hostctl/engine/core/cgroups.py``, also on remote servers).
"""

from __future__ import annotations

import os

from hostctl.engine import status_probe
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


def usage(h: Hierarchy, customer: str) -> Usage | None:
    """Live figures of a customer's cgroup, or None when it does not exist (read as a server's are: ``status_probe``)."""
    found = status_probe.cgroup_usage(h.version, h.leaf(customer, "memory"), h.leaf(customer, "cpu"), h.leaf(customer, "pids"))
    return None if found is None else Usage(**found)


def memory(settings: Settings, customer: str) -> tuple[int, int | None] | None:
    """(usage, limit) in bytes of the customer's cgroup; limit None when unlimited; None without a cgroup."""
    h, _ = hierarchy(settings, euid=0)  # reading needs no root; decide where the cgroups would be
    found = usage(h, customer)
    if found is None or found.memory is None:
        return None
    return found.memory, found.memory_limit
