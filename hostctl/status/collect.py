"""Gather what `hostctl status` shows: the effects at the edge, returning plain data.

The sources, each read defensively so that a vassal vanishing mid-read, a
stats socket that does not answer or a process we may not inspect never stops
the others: the Emperor's stats socket, each vassal's stats socket, psutil for
the process trees (RSS and CPU time), each customer's cgroup (through the
limits code, ``cgroupfs``) and safe apply's quarantine record
(``history.quarantined``). What could not be read is recorded as a sentence:
``Observed.problems`` per app, ``emperor_error`` and ``notes`` for the rest.
``rows.py`` turns all of it into rows.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Iterable

import psutil

from hostctl.engine import cgroupfs, history, status_probe
from hostctl.errors import HostctlError, Problem
from hostctl.inventory.schema import Settings
from hostctl.inventory.spec import AppSpec, Inventory
from hostctl.render import layout

STATS_TIMEOUT = 1.0


@dataclass(frozen=True)
class ProcSample:
    """One process tree (a vassal's master and its workers) at one moment."""

    at: float  # time.monotonic()
    rss: dict[int, int] = field(default_factory=dict)  # pid -> bytes
    cpu: dict[int, float] = field(default_factory=dict)  # pid -> user+system seconds
    denied: int = 0  # processes of the tree we were not allowed to inspect
    started: float | None = None  # the tree's root (the vassal's master): its process start time, epoch seconds


@dataclass(frozen=True)
class CgroupMemory:
    usage: int  # bytes
    limit: int | None  # bytes; None: no limit
    oom_kills: int | None = None  # the kernel's OOM kills in the cgroup (v1 memory.oom_control, v2 memory.events)


@dataclass(frozen=True)
class Observed:
    """Everything read for one status run, keyed by app id (``customer_app``) or customer."""

    now: float  # wall clock, for uptimes
    emperor: dict[str, Any] | None
    emperor_error: str | None = None
    emperor_absent: bool = False  # nothing listens on its socket (not running), as opposed to unreadable
    emperor_started: float | None = None  # the Emperor's process start time, epoch seconds
    vassals: dict[str, dict[str, Any]] = field(default_factory=dict)
    stats_errors: dict[str, str] = field(default_factory=dict)  # app id -> why its stats socket failed
    before: dict[str, ProcSample] = field(default_factory=dict)  # first process sample
    after: dict[str, ProcSample] = field(default_factory=dict)  # second sample (CPU% = delta)
    cgroups: dict[str, CgroupMemory] = field(default_factory=dict)  # customer -> memory
    quarantined: dict[str, str] = field(default_factory=dict)  # customer -> why safe apply held it back
    problems: dict[str, list[str]] = field(default_factory=dict)  # app id -> what could not be read
    notes: list[str] = field(default_factory=list)  # what could not be read, not tied to one app


# --- readers --------------------------------------------------------------------------


def read_vassal_stats(apps: Iterable[AppSpec], settings: Settings, timeout: float = STATS_TIMEOUT
                      ) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Each app's own stats socket, read in parallel: (stats by app id, errors by app id)."""
    found: dict[str, dict[str, Any]] = {}
    errors: dict[str, str] = {}
    addresses = {}
    for app in apps:
        address = layout.app_paths(settings, app.customer, app.name).stats
        if os.path.exists(address):
            addresses[app.id] = address
        else:  # stopped, asleep or crash-looping: no need for a thread to find that out
            errors[app.id] = f"stats socket {address}: no such file or directory"
    if not addresses:
        return found, errors
    with ThreadPoolExecutor(max_workers=min(16, len(addresses))) as pool:
        results = pool.map(lambda item: (item[0], item[1], status_probe.fetch(item[1], timeout)), addresses.items())
        for app_id, address, (stats, error) in results:
            if stats is not None:
                found[app_id] = stats
            else:
                errors[app_id] = f"stats socket {address}: {error}"
    return found, errors


def process_started(pid: Any) -> float | None:
    """When process ``pid`` started (epoch seconds), or None."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return None
    try:
        return psutil.Process(pid).create_time()
    except (psutil.Error, OSError):
        return None


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
    started = None
    for member in _descendants(pid, process_children() if children is None else children):
        try:
            proc = psutil.Process(member)
            with proc.oneshot():
                mem = proc.memory_info().rss
                times = proc.cpu_times()
                if member == pid:
                    started = proc.create_time()
        except psutil.NoSuchProcess:
            continue
        except psutil.AccessDenied:
            denied += 1
            continue
        rss[member] = mem
        cpu[member] = times.user + times.system
    return ProcSample(time.monotonic(), rss, cpu, denied, started)


def sample_trees(pids: dict[str, int]) -> dict[str, ProcSample]:
    if not pids:
        return {}
    children = process_children()
    return {app_id: sample_tree(pid, children) for app_id, pid in pids.items()}


def read_cgroups(inv: Inventory, notes: list[str]) -> dict[str, CgroupMemory]:
    """Memory use against the limit of each customer's cgroup (one budget for all of its apps).

    Where the cgroups are is decided once by the limits code (``cgroupfs.hierarchy``,
    the same as ``cgroupfs.memory`` per customer); a customer without one
    (limits off, or not applied yet) is simply absent.
    """
    out: dict[str, CgroupMemory] = {}
    try:
        hierarchy, _ = cgroupfs.hierarchy(inv.settings, euid=0)  # reading needs no root
    except (OSError, ValueError, HostctlError) as exc:
        notes.append(f"the cgroup hierarchy: {getattr(exc, 'strerror', None) or exc}")
        return out
    for name in [c.name for c in inv.customers] + list(inv.held):  # held back: its cgroup still runs its apps
        try:
            found = cgroupfs.usage(hierarchy, name)
        except (OSError, ValueError, HostctlError) as exc:
            notes.append(f"the cgroup of {name}: {getattr(exc, 'strerror', None) or exc}")
            continue
        if found is not None and found.memory is not None:
            out[name] = CgroupMemory(found.memory, found.memory_limit, found.oom_kills)
    return out


def read_quarantine(settings: Settings, notes: list[str]) -> dict[str, str]:
    """The customers safe apply held back at the last apply, and why."""
    try:
        return history.quarantined(settings)
    except OSError as exc:
        notes.append(f"the quarantine record {history.quarantine_file(settings)}: {(exc.strerror or str(exc)).lower()}")
        return {}


def held_reason(problems: Iterable[Problem]) -> str:
    """Why status shows a customer held back by its own broken file as quarantined (local and over SSH)."""
    return "its inventory file is broken: " + "; ".join(map(str, problems))


def observe(inv: Inventory, apps: list[AppSpec], cpu_interval: float = 0.5,
            previous: Observed | None = None) -> Observed:
    """Read every source once. CPU% needs two process samples: ``previous``'s (for --watch)
    or a fresh one ``cpu_interval`` seconds before the second."""
    settings = inv.settings
    address = layout.emperor_stats(settings)
    emperor_stats, emperor_error = status_probe.fetch_emperor(address, STATS_TIMEOUT)
    absent = emperor_error in status_probe.NOT_RUNNING
    if emperor_error is not None:
        emperor_error = f"the Emperor's stats socket {address}: {emperor_error}"
    vassals, stats_errors = read_vassal_stats(apps, settings)
    problems: dict[str, list[str]] = {}
    masters = status_probe.master_pids([app.id for app in apps], emperor_stats, vassals)
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
    notes: list[str] = []
    cgroup_memory = read_cgroups(inv, notes)
    quarantined = read_quarantine(settings, notes)
    for name, found in inv.held.items():  # its own file is broken now: apply keeps its live files
        quarantined[name] = held_reason(found)
    return Observed(now=time.time(), emperor=emperor_stats, emperor_error=emperor_error, emperor_absent=absent,
                    emperor_started=process_started((emperor_stats or {}).get("pid")), vassals=vassals,
                    stats_errors=stats_errors, before=before, after=after, cgroups=cgroup_memory,
                    quarantined=quarantined, problems=problems, notes=notes)


def unread(observed: Observed) -> list[str]:
    """What could not be read that belongs to no single app: the Emperor, then the rest."""
    return ([observed.emperor_error] if observed.emperor_error else []) + observed.notes
