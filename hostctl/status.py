"""Decide each app's state and figures from what was observed: pure, no I/O, no clock.

``rows(apps, observed)`` takes the inventory's apps and the plain data that
``status_collect.observe`` read (Emperor stats, vassal stats, process samples,
cgroup memory, quarantined customers, the time) and returns one ``Row`` per
app. The states:

- ``running``: the Emperor has the vassal, its master is ready and worker 1 accepts;
- ``starting``: the vassal is there but not yet ready or accepting (or it just
  recovered and stays in the Emperor's blacklist until its first request);
- ``idle``: an on-demand app that is asleep (or going to sleep): the Emperor
  holds its socket and starts it on the next request;
- ``crash-looping``: the vassal is in the Emperor's blacklist (it died before
  serving a request) and is not up now;
- ``stopped``: ``enabled: false`` in the inventory, and no vassal runs;
- ``down``: the inventory wants it, but no vassal runs (or no Emperor runs at all);
- ``unknown``: the Emperor's stats could not be read (permission denied, no
  answer in time, host unreachable) and the vassal's could not either;
- ``quarantined``: safe apply held the customer at its last-known-good files;
  the row's ``detail`` names the state underneath.

A row is healthy when it is running, starting, idle or stopped (quarantined: when
the state underneath is). ``hostctl status`` exits 1 when any row is not.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

from hostctl import layout
from hostctl.errors import HostctlError
from hostctl.inventory import AppSpec, Inventory
from hostctl.status_collect import Observed, ProcSample

STATES = ("running", "starting", "idle", "crash-looping", "stopped", "down", "unknown", "quarantined")
HEALTHY = frozenset({"running", "starting", "idle", "stopped"})
SORTS = ("name", "memory", "cpu")


@dataclass(frozen=True)
class Row:
    """One app's status. Every figure is None when it could not be known; these are the JSON keys."""

    customer: str
    app: str
    state: str
    healthy: bool
    detail: str  # why this state, in words
    pid: int | None  # the vassal's uWSGI master
    workers: int | None  # worker processes alive
    busy_workers: int | None
    requests: int | None  # served since the workers started (sum over workers)
    avg_rt_ms: float | None  # uWSGI's decaying average response time, weighted by requests
    listen_queue: int | None  # connections waiting in the socket backlog
    rss_bytes: int | None  # whole process tree (master + workers), from psutil
    cpu_percent: float | None  # whole process tree, over the sampling interval (100 = one core)
    memory_bytes: int | None  # the customer's cgroup: memory in use (shared by its apps)
    memory_limit_bytes: int | None  # the customer's cgroup limit (None: no limit or no cgroup)
    respawns: int | None  # vassal restarts by the Emperor (while crash-looping: failed starts)
    worker_respawns: int | None  # worker restarts inside the vassal (max-requests, harakiri, crashes)
    uptime_seconds: int | None  # since the Emperor last (re)started the vassal
    domains: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # what could not be read
    host: str | None = None  # multi-host: the server it runs on (None: this machine)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


JSON_KEYS = tuple(Row.__dataclass_fields__)


def select_apps(inv: Inventory, customers: Iterable[str], held: Iterable[AppSpec] = ()) -> list[AppSpec]:
    """The apps of the named customers (all when none are named); unknown names are an error.

    ``held``: the live apps of customers held back by a broken inventory file (``state.held_apps``).
    """
    names = list(customers)
    unknown = [n for n in names if inv.customer(n) is None and n not in inv.held]
    if unknown:
        known = ", ".join(sorted([c.name for c in inv.customers] + list(inv.held))) or "none"
        raise HostctlError(f"no such customer: {', '.join(repr(n) for n in unknown)} (known: {known})")
    wanted = set(names)
    return [app for app in [*inv.apps(), *held] if not wanted or app.customer in wanted]


def _by_id(entries: Any) -> dict[str, dict[str, Any]]:
    return {e["id"]: e for e in entries or [] if isinstance(e, dict) and isinstance(e.get("id"), str)}


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _positive(value: Any) -> int | None:
    found = _int(value)
    return found if found is not None and found > 0 else None


def _cpu_percent(before: ProcSample | None, after: ProcSample | None) -> float | None:
    if before is None or after is None or after.at <= before.at or not after.cpu:
        return None
    used = sum(max(0.0, after.cpu[pid] - before.cpu[pid]) for pid in after.cpu if pid in before.cpu)
    return round(100.0 * used / (after.at - before.at), 1)


def _workers(vstats: dict[str, Any] | None) -> list[dict[str, Any]]:
    workers = (vstats or {}).get("workers")
    return [w for w in workers if isinstance(w, dict) and _int(w.get("pid"))] if isinstance(workers, list) else []


def _avg_rt_ms(workers: list[dict[str, Any]]) -> float | None:
    served = [(_int(w.get("requests")) or 0, _int(w.get("avg_rt")) or 0) for w in workers]
    total = sum(n for n, _ in served)
    if not total:
        return None
    return round(sum(n * rt for n, rt in served) / total / 1000.0, 2)


def _state(app: AppSpec, observed: Observed, vassal: dict[str, Any] | None, black: dict[str, Any] | None,
           vstats: dict[str, Any] | None) -> tuple[str, str]:
    enabled = app.config.enabled
    if observed.emperor is None:
        if vstats is not None:
            return "running", "the Emperor did not answer, but the vassal's own stats socket did"
        if not enabled:
            return "stopped", "enabled: false in the inventory (the Emperor did not answer)"
        if observed.emperor_absent:
            return "down", "no Emperor is running, and the vassal did not answer either"
        return "unknown", "the Emperor's stats could not be read, nor the vassal's"
    up = vassal is not None and vassal.get("ready") and vassal.get("accepting") and not vassal.get("cursed")
    if up and black is not None:
        return "starting", "up again; stays in the Emperor's blacklist until it serves its first request"
    if up:
        return "running", "ready and accepting" + ("" if vassal.get("loyal") else "; no request served yet")
    if vassal is None and not enabled:
        return "stopped", "enabled: false in the inventory"
    if black is not None:
        attempts = (_int(black.get("attempt")) or 0) + 1  # the first failure is attempt 0
        wait = (_int(black.get("throttle_level")) or 0) // 1000
        return "crash-looping", (f"in the Emperor's blacklist: {attempts} failed start(s) before serving a request; "
                                 f"next try after {wait} s (see `hostctl logs {app.customer} --app {app.name}`)")
    if vassal is not None and vassal.get("on_demand"):
        if vassal.get("cursed"):
            return "idle", "on demand: going back to sleep after its idle time"
        if (_int(vassal.get("pid")) or 0) <= 0:
            return "idle", "on demand: asleep; the Emperor holds its socket and starts it on the next request"
    if vassal is not None and vassal.get("cursed"):
        if not enabled:
            return "stopped", "enabled: false in the inventory; the Emperor is stopping the vassal"
        return "down", "the Emperor is stopping the vassal"
    if vassal is not None:
        return "starting", "master not ready yet" if not vassal.get("ready") else "workers not accepting yet"
    return "down", "the Emperor has no vassal for it (has `hostctl apply` run?)"


def _indexes(observed: Observed) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    emperor = observed.emperor or {}
    return _by_id(emperor.get("vassals")), _by_id(emperor.get("blacklist"))


def row(app: AppSpec, observed: Observed, host: str | None = None,
        indexes: tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]] | None = None) -> Row:
    """One app's row; ``indexes`` (the Emperor's vassals and blacklist by file name) saves rebuilding them per app."""
    vassal_id = app.id + layout.VASSAL_EXT
    by_vassal, by_blacklist = indexes or _indexes(observed)
    vassal = by_vassal.get(vassal_id)
    black = by_blacklist.get(vassal_id)
    vstats = observed.vassals.get(app.id)
    state, detail = _state(app, observed, vassal, black, vstats)
    running_state = state
    healthy = state in HEALTHY
    problems = list(observed.problems.get(app.id, []))
    if state in ("running", "starting") and app.id in observed.stats_errors:
        problems.append(observed.stats_errors[app.id])
    if not app.config.enabled and state not in ("stopped",):
        problems.append("enabled: false in the inventory, but a vassal is still there; run `hostctl apply`")
    if app.customer in observed.quarantined:
        why = observed.quarantined[app.customer]
        detail = f"safe apply held back its last change ({why}); underneath: {state} ({detail})"
        state = "quarantined"

    workers = _workers(vstats)
    after = observed.after.get(app.id)
    rss = sum(after.rss.values()) if after is not None and after.rss else None
    if rss is None and workers and any(w.get("rss") for w in workers):
        rss = sum(_int(w.get("rss")) or 0 for w in workers)  # uWSGI's memory-report: workers only
    cgroup = observed.cgroups.get(app.customer)
    if black is not None and running_state == "crash-looping":
        respawns = (_int(black.get("attempt")) or 0) + 1  # failed starts so far
    else:
        respawns = _int(vassal.get("respawns")) if vassal else None
    started = _int(vassal.get("last_run")) if vassal else None
    uptime = int(observed.now - started) if started and running_state not in ("crash-looping", "idle") else None
    return Row(
        customer=app.customer, app=app.name, state=state, healthy=healthy, detail=detail,
        pid=_positive((vassal or {}).get("pid")) or _positive((vstats or {}).get("pid")),
        workers=len(workers) if vstats is not None else None,
        busy_workers=sum(1 for w in workers if w.get("status") == "busy") if vstats is not None else None,
        requests=sum(_int(w.get("requests")) or 0 for w in workers) if vstats is not None else None,
        avg_rt_ms=_avg_rt_ms(workers),
        listen_queue=_int((vstats or {}).get("listen_queue")),
        rss_bytes=rss,
        cpu_percent=_cpu_percent(observed.before.get(app.id), after),
        memory_bytes=cgroup.usage if cgroup else None,
        memory_limit_bytes=cgroup.limit if cgroup else None,
        respawns=respawns,
        worker_respawns=sum(max(0, (_int(w.get("respawn_count")) or 1) - 1) for w in workers) if vstats is not None else None,
        uptime_seconds=max(0, uptime) if uptime is not None else None,
        domains=list(app.config.domains),
        problems=problems,
        host=host,
    )


def rows(apps: Iterable[AppSpec], observed: Observed, host: str | None = None) -> list[Row]:
    indexes = _indexes(observed)
    return [row(app, observed, host, indexes) for app in apps]


def healthy(found: Iterable[Row]) -> bool:
    return all(r.healthy for r in found)


def sort_rows(found: list[Row], by: str) -> list[Row]:
    """By name (customer, app), or heaviest first by memory (RSS) or CPU%."""
    if by == "memory":
        return sorted(found, key=lambda r: (-(r.rss_bytes or 0), r.customer, r.app))
    if by == "cpu":
        return sorted(found, key=lambda r: (-(r.cpu_percent or 0.0), r.customer, r.app))
    return sorted(found, key=lambda r: (r.host or "", r.customer, r.app))
