"""`hostctl status --host`: the status of a multi-host inventory, read on each server over SSH.

For every host, one SSH round trip runs ``status_probe`` (its source, with the
server's ``python3 -c``; nothing is installed there) with a JSON request
naming that host's sockets and files, and turns the answer into the same
``Observed`` the local collector makes. Hosts are read in parallel
(``ssh.each_host``); a host that cannot be reached becomes an ``Observed``
whose ``emperor_error`` says why, so its apps show as unknown and the others
are still shown. ``limits`` and ``files`` (`limits --host`, `certs --host`) ask the
same probe, over the same connection code, for cgroup figures and certificate files.
"""

from __future__ import annotations

import json
import shlex
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

from hostctl.engine import history, state, status_probe
from hostctl.engine.core import runtime
from hostctl.errors import HostctlError
from hostctl.inventory import placement
from hostctl.inventory.schema import Settings
from hostctl.inventory.spec import AppSpec, Inventory
from hostctl.render import layout
from hostctl.render.cgroups import Hierarchy, Usage
from hostctl.status.collect import STATS_TIMEOUT, CgroupMemory, Observed, ProcSample, held_reason
from hostctl.targets import ssh

PROBE_TIMEOUT = 60.0


def request(inv: Inventory, host: str, apps: list[AppSpec], cpu_interval: float, held: Iterable[str] = ()) -> dict[str, Any]:
    """What the probe should read on ``host``: its paths for these apps, and where it finds the live apps of the
    ``held`` customers (held back by their broken inventory file: their host is unknown, every host is asked) (pure)."""
    settings = placement.host_settings(inv.settings, inv.settings.hosts[host])
    out = {
        "emperor_stats": layout.emperor_stats(settings),
        "apps": {app.id: layout.app_paths(settings, app.customer, app.name).stats for app in apps},
        "customers": {app.id: app.customer for app in apps},
        "quarantine": history.quarantine_file(settings),
        "cpu_interval": cpu_interval,
        "timeout": STATS_TIMEOUT,
    }
    if held:
        out["held"] = held_request(settings, held)
    return out


def held_request(settings: Settings, customers: Iterable[str]) -> dict[str, Any]:
    """Where the probe finds held-back customers on a host: its paths, ``{customer}`` and ``{app}`` filled in there."""
    paths = layout.app_paths(settings, "{customer}", "{app}")
    return {"customers": sorted(customers), "manifest": layout.manifest(settings), "id": AppSpec("{customer}", "{app}", None).id,
            "stats": paths.stats, "server_block": paths.server_block, "record": runtime.record_path(settings.state_dir, "{customer}")}


@dataclass(frozen=True)
class HeldHere:
    """A held-back customer found on a host: its live apps (domains from their server blocks) and its Unix user."""

    customer: str
    apps: tuple[AppSpec, ...]
    user: str | None


def _held(data: Any) -> list[HeldHere]:
    return [HeldHere(customer, tuple(state.held_app(customer, app, block) for app, block in sorted(found["apps"].items())),
                     found.get("user")) for customer, found in sorted((data or {}).items())]


def command() -> str:
    """The probe's whole source, run by the server's python3."""
    return "python3 -c " + shlex.quote(Path(status_probe.__file__).read_text(encoding="utf-8"))


def _sample(data: dict[str, Any]) -> ProcSample:
    return ProcSample(at=float(data["at"]), rss={int(k): int(v) for k, v in data["rss"].items()},
                      cpu={int(k): float(v) for k, v in data["cpu"].items()}, denied=int(data.get("denied", 0)),
                      started=data.get("started"))


def _payload(output: str) -> Any:
    _, mark, payload = output.rpartition(status_probe.MARK)
    if not mark:
        raise ValueError("no answer")
    return json.loads(payload)


def parse(output: str, host: str) -> Observed:
    """The probe's answer as an ``Observed`` (pure)."""
    return parse_all(output, host)[0]


def parse_all(output: str, host: str) -> tuple[Observed, list[HeldHere]]:
    """The probe's answer as an ``Observed``, and the held-back customers it found on the host (pure)."""
    try:
        data = _payload(output)
        denied = {app_id: s["denied"] for app_id, s in data["after"].items() if s.get("denied")}
        return Observed(
            now=float(data["now"]), emperor=data["emperor"],
            emperor_error=f"the Emperor's stats socket on {host}: {data['emperor_error']}" if data["emperor_error"] else None,
            emperor_absent=data["emperor_error"] in status_probe.NOT_RUNNING, emperor_started=data.get("emperor_started"),
            vassals=data["vassals"], stats_errors=data["stats_errors"],
            before={k: _sample(v) for k, v in data["before"].items()},
            after={k: _sample(v) for k, v in data["after"].items()},
            cgroups={k: CgroupMemory(int(v["usage"]), v["limit"], v.get("oom_kills")) for k, v in data["cgroups"].items()},
            quarantined=dict(data["quarantined"]), notes=[f"{host}: {n}" for n in data["notes"]],
            problems={app_id: [f"{n} process(es) of its tree: permission denied"] for app_id, n in denied.items()},
        ), _held(data.get("held"))
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise HostctlError(f"host {host!r}: the status probe gave no usable answer ({exc}):\n{output[-800:].strip()}") from None


def _probe(inv: Inventory, host: str, body: dict[str, Any], timeout: float) -> str:
    """Run the probe on ``host`` over SSH with ``body`` on its stdin: its output; ``HostctlError`` when it fails."""
    conn = ssh.connect(inv.settings.hosts[host], str(inv.root), host)
    try:
        return run_probe(conn, host, body, timeout)
    finally:
        conn.close()


def run_probe(conn: ssh.HostConnection, host: str, data: dict[str, Any], timeout: float = PROBE_TIMEOUT) -> str:
    """Run the probe on an open connection to ``host`` with request ``data``; its output (``MARK`` then JSON)."""
    done = ssh.execute(conn, command(), stdin=json.dumps(data).encode(), timeout=timeout)
    if done.status != 0:
        raise HostctlError(f"host {host!r}: the status probe exited {done.status}:\n{done.output[-800:].strip()}")
    return done.output


@contextmanager
def _naming(host: str) -> Iterator[None]:
    """Errors of a read on one host name it (a connection error names only the address)."""
    try:
        yield
    except HostctlError as exc:
        message = exc.format_message()
        raise HostctlError(message if message.startswith(f"host {host!r}") else f"host {host!r}: {message}") from exc


def _answer(output: str, host: str, key: str) -> dict[str, Any]:
    """The probe's ``key`` section (pure)."""
    try:
        found = _payload(output)[key]
        if not isinstance(found, dict):
            raise ValueError("no answer")
        return found
    except (ValueError, KeyError, TypeError) as exc:
        raise HostctlError(f"host {host!r}: the probe gave no usable answer ({exc}):\n{output[-800:].strip()}") from None


def limits(inv: Inventory, host: str) -> tuple[Hierarchy, list[tuple[str, Usage | None]]]:
    """`limits --host`: where that server keeps customer cgroups (decided from its own facts, as deploy does)
    and the live figures of each customer placed there, read there over SSH."""
    from hostctl.targets import deploy, remote as host_state

    placement.select_hosts(inv, [host])
    settings = placement.host_settings(inv.settings, inv.settings.hosts[host])
    names = sorted(c.name for c in inv.customers if c.host == host)
    conn = ssh.connect(inv.settings.hosts[host], str(inv.root), host)
    try:
        with _naming(host):
            done = ssh.execute(conn, host_state.facts_command(settings), timeout=PROBE_TIMEOUT)
        if done.status != 0:
            raise HostctlError(f"host {host!r}: reading its cgroup mounts failed (exit {done.status}): {(done.output + done.errors).strip()[:500]}")
        facts = done.output.partition(f"{host_state.FACTS_MARK}\n")[2]
        h = deploy.host_identity(inv, host, facts).cgroup or Hierarchy(None, why_off="not decided")
        dirs = {n: {"version": h.version, "memory": h.leaf(n, "memory"), "cpu": h.leaf(n, "cpu"), "pids": h.leaf(n, "pids")}
                for n in names}
        usage = _answer(run_probe(conn, host, {"kind": "limits", "cgroups": dirs}), host, "usage")
    finally:
        conn.close()
    return h, [(n, Usage(**usage[n]) if isinstance(usage.get(n), dict) else None) for n in names]


def files(inv: Inventory, host: str, paths: list[str]) -> dict[str, dict[str, Any]]:
    """`certs --host`: the certificate and key files at ``paths`` on that server, read there (bounded) over SSH:
    each {"data": text}, {"missing": True} or {"error": why}."""
    with _naming(host):
        return _answer(_probe(inv, host, {"kind": "files", "files": sorted(set(paths))}, PROBE_TIMEOUT), host, "files")


def observe(inv: Inventory, host: str, apps: list[AppSpec], cpu_interval: float,
            held: Iterable[str] = ()) -> tuple[Observed, list[HeldHere]]:
    """Run the probe on ``host`` over SSH; raise ``HostctlError`` when it cannot be reached or fails."""
    return parse_all(_probe(inv, host, request(inv, host, apps, cpu_interval, held), PROBE_TIMEOUT + cpu_interval), host)


def observe_hosts(inv: Inventory, hosts: list[str], apps: list[AppSpec], cpu_interval: float,
                  held: Iterable[str] = ()) -> list[tuple[str, list[AppSpec], Observed]]:
    """Each host with its apps and what was read there, all hosts at once; unreachable ones say why.

    ``held``: customers held back by their broken inventory file. Their host is unknown, so every host
    is asked; those found are listed with that host's apps, quarantined with the file's problems.
    """
    held = sorted(held)
    placed = {c.name: c.host for c in inv.customers}
    by_host = {name: [a for a in apps if placed.get(a.customer) == name] for name in hosts}
    results = ssh.each_host(hosts, lambda name: observe(inv, name, by_host[name], cpu_interval, held))
    out = []
    for name in hosts:
        found = results[name]
        if isinstance(found, BaseException):
            out.append((name, by_host[name], Observed(now=0.0, emperor=None, emperor_error=f"host {name!r}: {_why(found)}")))
            continue
        observed, here = found
        for customer in here:
            observed.quarantined[customer.customer] = held_reason(inv.held.get(customer.customer, ()))
        out.append((name, by_host[name] + [a for c in here for a in c.apps], observed))
    return out


def _why(exc: BaseException) -> str:
    return exc.format_message() if isinstance(exc, HostctlError) else f"{type(exc).__name__}: {exc}"


def find_held(inv: Inventory, customer: str, hosts: list[str]) -> tuple[list[tuple[str, HeldHere]], list[str]]:
    """The hosts where held-back ``customer`` has live apps (all asked at once), and why others could not be asked."""
    def ask(name: str) -> list[HeldHere]:
        body = {"only_held": True, "held": held_request(placement.host_settings(inv.settings, inv.settings.hosts[name]), [customer])}
        return _held(_payload(_probe(inv, name, body, PROBE_TIMEOUT)).get("held"))

    results = ssh.each_host(hosts, ask)
    found, unread = [], []
    for name in hosts:
        result = results[name]
        if isinstance(result, BaseException):
            unread.append(f"host {name!r}: {_why(result)}")
        else:
            found += [(name, h) for h in result]
    return found, unread
