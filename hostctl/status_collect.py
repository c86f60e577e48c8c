"""Gather what `hostctl status` shows: the effects at the edge, returning plain data.

Four sources, each read defensively so that a vassal vanishing mid-read, a
stats socket that does not answer or a process we may not inspect never stops
the others: the Emperor's stats socket, each vassal's stats socket, psutil for
the process trees (RSS and CPU time), and the cgroup memory files. What could
not be read is recorded as a sentence in ``Observed.problems`` (per app) and
``Observed.emperor_error``; ``status.py`` turns all of it into rows.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import psutil

from hostctl import emperor, layout
from hostctl.inventory import AppSpec, Inventory
from hostctl.model import Settings

STATS_TIMEOUT = 1.0
CGROUP_V1_MEMORY = "/sys/fs/cgroup/memory"
CGROUP_V2_ROOT = "/sys/fs/cgroup/unified"
UNLIMITED = 1 << 62  # cgroup v1 reports "no limit" as a huge number near 2**63


@dataclass(frozen=True)
class ProcSample:
    """One process tree (a vassal's master and its workers) at one moment."""

    at: float  # time.monotonic()
    rss: dict[int, int] = field(default_factory=dict)  # pid -> bytes
    cpu: dict[int, float] = field(default_factory=dict)  # pid -> user+system seconds
    denied: int = 0  # processes of the tree we were not allowed to inspect


@dataclass(frozen=True)
class CgroupMemory:
    usage: int  # bytes
    limit: int | None  # bytes; None: no limit
    path: str


@dataclass(frozen=True)
class Observed:
    """Everything read for one status run, keyed by app id (``customer_app``) or customer."""

    now: float  # wall clock, for uptimes
    emperor: dict[str, Any] | None
    emperor_error: str | None = None
    vassals: dict[str, dict[str, Any]] = field(default_factory=dict)
    stats_errors: dict[str, str] = field(default_factory=dict)  # app id -> why its stats socket failed
    before: dict[str, ProcSample] = field(default_factory=dict)  # first process sample
    after: dict[str, ProcSample] = field(default_factory=dict)  # second sample (CPU% = delta)
    cgroups: dict[str, CgroupMemory] = field(default_factory=dict)  # customer -> memory
    quarantined: frozenset[str] = frozenset()
    problems: dict[str, list[str]] = field(default_factory=dict)  # app id -> what could not be read


# --- hooks for the other issues' readers ---------------------------------------------


def cgroup_reader() -> Callable[[Settings, str], tuple[int, int] | None] | None:
    """The limits issue's ``cgroups.cgroup_memory(settings, customer)``, when it has landed."""
    try:
        from hostctl import cgroups  # type: ignore[attr-defined]
    except ImportError:
        return None
    return getattr(cgroups, "cgroup_memory", None)


def quarantined_customers(settings: Settings) -> frozenset[str]:
    """Customers the safe-apply issue quarantined; empty until that reader exists."""
    try:
        from hostctl import quarantine  # type: ignore[attr-defined]
    except ImportError:
        return frozenset()
    reader = getattr(quarantine, "quarantined", None)
    if reader is None:
        return frozenset()
    try:
        return frozenset(reader(settings))
    except (OSError, ValueError):
        return frozenset()


# --- readers --------------------------------------------------------------------------


def read_vassal_stats(apps: Iterable[AppSpec], settings: Settings, timeout: float = STATS_TIMEOUT
                      ) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Each app's own stats socket, read in parallel: (stats by app id, errors by app id)."""
    apps = list(apps)
    addresses = {app.id: layout.app_paths(settings, app.customer, app.name).stats for app in apps}
    found: dict[str, dict[str, Any]] = {}
    errors: dict[str, str] = {}
    if not apps:
        return found, errors
    with ThreadPoolExecutor(max_workers=min(16, len(apps))) as pool:
        results = pool.map(lambda item: (item[0], item[1], emperor.fetch_stats(item[1], timeout)), addresses.items())
        for app_id, address, (stats, error) in results:
            if stats is not None:
                found[app_id] = stats
            else:
                errors[app_id] = f"stats socket {address}: {error}"
    return found, errors


def process_children() -> dict[int, list[int]]:
    """Parent pid -> child pids, from one pass over the process table (not one per tree)."""
    children: dict[int, list[int]] = {}
    for proc in psutil.process_iter(["ppid"]):
        ppid = proc.info.get("ppid")
        if ppid:
            children.setdefault(ppid, []).append(proc.pid)
    return children


def _descendants(pid: int, children: dict[int, list[int]]) -> list[int]:
    out, todo = [pid], [pid]
    while todo:
        for child in children.get(todo.pop(), ()):
            out.append(child)
            todo.append(child)
    return out


def sample_tree(pid: int, children: dict[int, list[int]] | None = None) -> ProcSample:
    """RSS and CPU seconds of ``pid`` and all its descendants; vanished processes are skipped."""
    rss: dict[int, int] = {}
    cpu: dict[int, float] = {}
    denied = 0
    for member in _descendants(pid, process_children() if children is None else children):
        try:
            proc = psutil.Process(member)
            with proc.oneshot():
                mem = proc.memory_info().rss
                times = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        except psutil.AccessDenied:
            denied += 1
            continue
        rss[member] = mem
        cpu[member] = times.user + times.system
    return ProcSample(time.monotonic(), rss, cpu, denied)


def sample_trees(pids: dict[str, int]) -> dict[str, ProcSample]:
    if not pids:
        return {}
    children = process_children()
    return {app_id: sample_tree(pid, children) for app_id, pid in pids.items()}


def _read_int(path: str) -> int:
    with open(path, encoding="ascii") as fh:
        text = fh.read().strip()
    return UNLIMITED if text == "max" else int(text)


def memory_cgroup_of(pid: int, proc: str = "/proc", v1_root: str = CGROUP_V1_MEMORY,
                     v2_root: str = CGROUP_V2_ROOT) -> CgroupMemory | None:
    """The memory use and limit of the cgroup ``pid`` lives in (v1 memory controller, else v2).

    The fallback until the limits issue's reader is on main: it asks the
    process itself where it is, so it works whoever created the cgroup.
    """
    with open(os.path.join(proc, str(pid), "cgroup"), encoding="ascii") as fh:
        lines = fh.read().splitlines()
    candidates = []
    for line in lines:
        _hier, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            base = os.path.join(v1_root, path.lstrip("/"))
            candidates.append((base, "memory.usage_in_bytes", "memory.limit_in_bytes"))
        elif controllers == "":
            base = os.path.join(v2_root, path.lstrip("/"))
            candidates.append((base, "memory.current", "memory.max"))
    for base, usage_file, limit_file in candidates:
        try:
            usage = _read_int(os.path.join(base, usage_file))
            limit = _read_int(os.path.join(base, limit_file))
        except (OSError, ValueError):
            continue
        return CgroupMemory(usage, None if limit >= UNLIMITED else limit, base)
    return None


def read_cgroups(inv: Inventory, masters: dict[str, int], problems: dict[str, list[str]],
                 emperor_pid: int | None = None) -> dict[str, CgroupMemory]:
    """Memory use against the limit, per customer (one budget for all of a customer's apps).

    Without the limits issue's reader, a vassal's own memory cgroup counts only
    when the Emperor is not in it too: otherwise it is the Emperor's (shared by
    every customer, or the whole machine's) and says nothing about this customer.
    """
    out: dict[str, CgroupMemory] = {}
    reader = cgroup_reader()
    shared = None
    if reader is None and emperor_pid:
        try:
            shared = memory_cgroup_of(emperor_pid)
        except (OSError, ValueError):
            shared = None
    for customer in inv.customers:
        if reader is not None:
            try:
                found = reader(inv.settings, customer.name)
            except OSError as exc:
                found = None
                for app in customer.apps:
                    problems.setdefault(app.id, []).append(f"cgroup memory: {exc.strerror or exc}")
            if found is not None:
                usage, limit = found
                out[customer.name] = CgroupMemory(usage, limit if limit and limit < UNLIMITED else None, "")
            continue
        for app in customer.apps:
            pid = masters.get(app.id)
            if pid is None:
                continue
            try:
                found_v = memory_cgroup_of(pid)
            except (OSError, ValueError) as exc:
                problems.setdefault(app.id, []).append(f"cgroup of pid {pid}: {getattr(exc, 'strerror', None) or exc}")
                continue
            if found_v is not None and (shared is None or found_v.path != shared.path):
                out[customer.name] = found_v
                break
    return out


def master_pids(apps: Iterable[AppSpec], emperor_stats: dict[str, Any] | None,
                vassals: dict[str, dict[str, Any]]) -> dict[str, int]:
    """Each app's uWSGI master pid: from the Emperor's view, else from the vassal's own stats."""
    by_file = {}
    for vassal in (emperor_stats or {}).get("vassals") or []:
        if isinstance(vassal, dict) and vassal.get("pid"):
            by_file[vassal.get("id")] = vassal["pid"]
    out = {}
    for app in apps:
        pid = by_file.get(app.id + layout.VASSAL_EXT) or (vassals.get(app.id) or {}).get("pid")
        if isinstance(pid, int) and pid > 0:
            out[app.id] = pid
    return out


def observe(inv: Inventory, apps: list[AppSpec], cpu_interval: float = 0.5,
            previous: Observed | None = None) -> Observed:
    """Read every source once. CPU% needs two process samples: ``previous``'s (for --watch)
    or a fresh one ``cpu_interval`` seconds before the second."""
    settings = inv.settings
    address = layout.emperor_stats(settings)
    emperor_stats, emperor_error = emperor.fetch_stats(address)
    if emperor_error is not None:
        emperor_error = f"the Emperor's stats socket {address}: {emperor_error}"
    vassals, stats_errors = read_vassal_stats(apps, settings)
    problems: dict[str, list[str]] = {}
    masters = master_pids(apps, emperor_stats, vassals)
    if previous is not None and previous.after:
        before = {app_id: previous.after[app_id] for app_id in masters if app_id in previous.after}
        missing = {app_id: pid for app_id, pid in masters.items() if app_id not in before}
        before.update(sample_trees(missing))
    else:
        before = sample_trees(masters)
        if masters and cpu_interval > 0:
            time.sleep(cpu_interval)
    after = sample_trees(masters)
    for app_id, sample in after.items():
        if sample.denied:
            problems.setdefault(app_id, []).append(f"{sample.denied} process(es) in pid {masters[app_id]}'s tree: permission denied")
    emperor_pid = (emperor_stats or {}).get("pid")
    cgroups = read_cgroups(inv, masters, problems, emperor_pid if isinstance(emperor_pid, int) else None)
    return Observed(now=time.time(), emperor=emperor_stats, emperor_error=emperor_error, vassals=vassals,
                    stats_errors=stats_errors,
                    before=before, after=after, cgroups=cgroups, quarantined=quarantined_customers(settings),
                    problems=problems)
