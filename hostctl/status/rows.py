"""Decide each app's state and figures from what was observed: pure, no I/O, no clock.

``rows(apps, observed)`` takes the inventory's apps and the plain data that
``status_collect.observe`` read (Emperor stats, vassal stats, process samples,
cgroup memory, quarantined customers, the time) and returns one ``Row`` per
app. The states:

- ``running``: the Emperor has the vassal and its workers accept (the Emperor's
  ``accepting``, and the vassal's own stats show an accepting worker). The
  Emperor's ``ready`` is not used: after a graceful reload it stays 0 for good
  (Debian's uWSGI 2.0.21, measured), although the vassal serves;
- ``reloading``: a graceful reload is under way: the Emperor saw the file change
  (mtime) and told the vassal, whose workers finish their requests while the
  master re-reads its file (``accepting`` 0 after it had accepted), or the
  workers are being replaced inside the vassal (no accepting worker, or the
  master's stats socket is down while it re-executes itself). Requests wait in
  the socket's backlog meanwhile;
- ``starting``: the vassal is there but has never accepted yet (or it just
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

Counters: ``reloads`` are the graceful reloads the Emperor ordered (its
``respawns``, which counts exactly those, since it last started the vassal);
``respawns`` are restarts after the vassal died: failed starts while
crash-looping, else 1 when the Emperor's entry was made after the master died
(see ``_died_and_restarted``) and 0 otherwise: the Emperor keeps no count of
them, so this is a lower bound; ``oom_kills`` come from the customer's
cgroup (v1 ``memory.oom_control``, v2 ``memory.events``).

A row is healthy when it is running, reloading, starting, idle or stopped (quarantined: when
the state underneath is). ``hostctl status`` exits 1 when any row is not.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

from hostctl.engine.status_probe import NOT_RUNNING as NOT_LISTENING
from hostctl.errors import HostctlError
from hostctl.inventory.spec import AppSpec, Inventory
from hostctl.render import layout
from hostctl.status.collect import Observed, ProcSample

STATES = ("running", "reloading", "starting", "idle", "crash-looping", "stopped", "down", "unknown", "quarantined")
HEALTHY = frozenset({"running", "reloading", "starting", "idle", "stopped"})
RESTART_SLACK = 2  # seconds: a vassal first run this long after its file was written (or the Emperor started) was restarted
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
    respawns: int | None  # vassal restarts after it died (while crash-looping: failed starts); reloads are not counted
    worker_respawns: int | None  # worker restarts inside the vassal (max-requests, harakiri, crashes, OOM kills)
    uptime_seconds: int | None  # since its master process started (a graceful reload keeps the master)
    reloads: int | None = None  # graceful reloads the Emperor ordered (file rewritten or touched) since it started the vassal
    oom_kills: int | None = None  # processes the kernel killed in the customer's cgroup for lack of memory (shared by its apps)
    domains: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # what could not be read
    host: str | None = None  # multi-host: the server it runs on (None: this machine)
    # the app's workers and cron jobs (render/lifecycle.py): {"workers": {name: pid or None}, "cron": [{schedule, pid, started_at}]}
    background: dict[str, Any] = field(default_factory=dict)

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


def _died_and_restarted(vassal: dict[str, Any] | None, emperor_started: float | None) -> bool:
    """The Emperor started this vassal again after its master died.

    A dead vassal is replaced by a new Emperor entry (``first_run`` = now, ``respawns``
    back to 0), while its file keeps its mtime (``born``). hostctl writes every file
    fresh, so ``first_run`` well after ``born`` means a restart, unless the Emperor
    itself started after the file was written (then every vassal is new).
    """
    first_run, born = _int((vassal or {}).get("first_run")), _int((vassal or {}).get("born"))
    if not first_run or not born or first_run <= born + RESTART_SLACK:
        return False
    return emperor_started is None or first_run > emperor_started + RESTART_SLACK


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
    pid = _int((vassal or {}).get("pid")) or 0
    up = vassal is not None and vassal.get("accepting") and not vassal.get("cursed")
    if up and black is not None:
        return "starting", "up again; stays in the Emperor's blacklist until it serves its first request"
    if up:
        stats_error = observed.stats_errors.get(app.id, "")
        accepting = [_int(w.get("accepting")) for w in _workers(vstats)]
        if accepting and all(a == 0 for a in accepting):
            return "reloading", "its workers are being replaced (a reload inside the vassal); requests wait in the socket's backlog"
        if vstats is None and any(why in stats_error for why in NOT_LISTENING):
            return "reloading", "its master is restarting (its stats socket does not answer); requests wait in the socket's backlog"
        detail = "accepting requests" + ("" if vassal.get("loyal") else "; no request served yet")
        if _died_and_restarted(vassal, observed.emperor_started):
            detail += "; its master died and the Emperor started it again"
        return "running", detail
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
        if pid <= 0:
            return "idle", "on demand: asleep; the Emperor holds its socket and starts it on the next request"
    if vassal is not None and vassal.get("cursed"):
        if not enabled:
            return "stopped", "enabled: false in the inventory; the Emperor is stopping the vassal"
        return "down", "the Emperor is stopping the vassal"
    if vassal is not None:
        if (_int(vassal.get("respawns")) or 0) > 0 and (_int(vassal.get("last_accepting")) or 0) > 0:
            return "reloading", ("graceful reload: its file changed, its workers finish their requests and the master "
                                 "re-reads the file; requests wait in the socket's backlog")
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
    after = observed.after.get(app.id)
    started = after.started if after is not None else None
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
    rss = sum(after.rss.values()) if after is not None and after.rss else None
    if rss is None and workers and any(w.get("rss") for w in workers):
        rss = sum(_int(w.get("rss")) or 0 for w in workers)  # uWSGI's memory-report: workers only
    cgroup = observed.cgroups.get(app.customer)
    if black is not None and running_state == "crash-looping":
        respawns = (_int(black.get("attempt")) or 0) + 1  # failed starts so far
    else:  # the Emperor's own "respawns" counts reloads, not restarts
        respawns = (1 if _died_and_restarted(vassal, observed.emperor_started) else 0) if vassal else None
    reloads = _int(vassal.get("respawns")) if vassal else None
    since = started or _int((vassal or {}).get("last_run"))
    uptime = int(observed.now - since) if since and running_state not in ("crash-looping", "idle") else None
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
        reloads=reloads,
        oom_kills=cgroup.oom_kills if cgroup else None,
        domains=list(app.config.domains),
        problems=problems,
        host=host,
        background=_background(app, vstats),
    )


def _background(app: AppSpec, vstats: dict[str, Any] | None) -> dict[str, Any]:
    """Workers and cron jobs as the vassal's stats list them (uWSGI keeps the order of the vassal's lines)."""
    cfg = app.config
    if not cfg.workers and not cfg.cron:
        return {}
    daemons = [d for d in (vstats or {}).get("daemons") or [] if isinstance(d, dict)]
    crons = [c for c in (vstats or {}).get("crons") or [] if isinstance(c, dict)]
    workers = {name: (_positive(daemons[i].get("pid")) if i < len(daemons) else None) for i, name in enumerate(cfg.workers)}
    cron = [{"schedule": job.schedule, "pid": _positive(crons[i].get("pid")) if i < len(crons) else None,
             "started_at": _positive(crons[i].get("started_at")) if i < len(crons) else None}
            for i, job in enumerate(cfg.cron)]
    return {"workers": workers, "cron": cron}



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
