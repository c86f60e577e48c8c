"""The cgroup effects, kept thin: probe the host, read live values, create cgroups and write limits.

Every decision is made in ``render/cgroups.py``; this module only looks at and
touches the cgroup filesystem (or the fake tree a test points the settings at).
"""

from __future__ import annotations

import os

from hostctl.errors import HostctlError
from hostctl.inventory.schema import CgroupSettings, Settings
from hostctl.render import cgroups
from hostctl.render.cgroups import CgroupChange, CustomerCgroup, Facts, Hierarchy, Usage

MOUNTS = "/proc/self/mounts"


def _read(path: str) -> str | None:
    """A small cgroup file's content (os-level: this runs for every limit file of every customer)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        return os.read(fd, 65536).decode("ascii", errors="replace")
    finally:
        os.close(fd)


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
    live: dict[str, str | None] = {}
    for cg in desired:
        for w in cg.writes:
            value = _read(w.path)
            live[w.path] = value
            if value is not None:  # its directory exists: no need to stat it
                live[w.path.rpartition("/")[0]] = ""
        for d in cg.dirs:
            if d not in live:
                live[d] = "" if os.path.isdir(d) else None
    present = []
    for base in cgroups.customer_dirs(h):
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


def apply(changes: tuple[CgroupChange, ...]) -> list[str]:
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
            raise HostctlError(f"could not {what}: {exc.strerror}; no vassal or server block was written") from exc
    return messages


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
