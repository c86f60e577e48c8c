"""`hostctl status --host`: the status of a multi-host inventory, read on each server over SSH.

For every host, one SSH round trip runs ``status_probe`` (its source, with the
server's ``python3 -c``; nothing is installed there) with a JSON request
naming that host's sockets and files, and turns the answer into the same
``Observed`` the local collector makes. Hosts are read in parallel
(``ssh.each_host``); a host that cannot be reached becomes an ``Observed``
whose ``emperor_error`` says why, so its apps show as unknown and the others
are still shown.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

from hostctl.engine import history, status_probe
from hostctl.errors import HostctlError
from hostctl.inventory import placement
from hostctl.inventory.spec import AppSpec, Inventory
from hostctl.render import layout
from hostctl.status.collect import STATS_TIMEOUT, CgroupMemory, Observed, ProcSample
from hostctl.targets import ssh

PROBE_TIMEOUT = 60.0


def request(inv: Inventory, host: str, apps: list[AppSpec], cpu_interval: float) -> dict[str, Any]:
    """What the probe should read on ``host``: its paths for these apps (pure)."""
    settings = placement.host_settings(inv.settings, inv.settings.hosts[host])
    return {
        "emperor_stats": layout.emperor_stats(settings),
        "apps": {app.id: layout.app_paths(settings, app.customer, app.name).stats for app in apps},
        "customers": {app.id: app.customer for app in apps},
        "quarantine": history.quarantine_file(settings),
        "cpu_interval": cpu_interval,
        "timeout": STATS_TIMEOUT,
    }


def command() -> str:
    """The probe's whole source, run by the server's python3."""
    return "python3 -c " + shlex.quote(Path(status_probe.__file__).read_text(encoding="utf-8"))


def _sample(data: dict[str, Any]) -> ProcSample:
    return ProcSample(at=float(data["at"]), rss={int(k): int(v) for k, v in data["rss"].items()},
                      cpu={int(k): float(v) for k, v in data["cpu"].items()}, denied=int(data.get("denied", 0)),
                      started=data.get("started"))


def parse(output: str, host: str) -> Observed:
    """The probe's answer as an ``Observed`` (pure)."""
    _, mark, payload = output.rpartition(status_probe.MARK)
    try:
        if not mark:
            raise ValueError("no answer")
        data = json.loads(payload)
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
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise HostctlError(f"host {host!r}: the status probe gave no usable answer ({exc}):\n{output[-800:].strip()}") from None


def observe(inv: Inventory, host: str, apps: list[AppSpec], cpu_interval: float) -> Observed:
    """Run the probe on ``host`` over SSH; raise ``HostctlError`` when it cannot be reached or fails."""
    conn = ssh.connect(inv.settings.hosts[host], str(inv.root), host)
    try:
        done = ssh.execute(conn, command(), stdin=json.dumps(request(inv, host, apps, cpu_interval)).encode(),
                           timeout=PROBE_TIMEOUT + cpu_interval)
    finally:
        conn.close()
    if done.status != 0:
        raise HostctlError(f"host {host!r}: the status probe exited {done.status}:\n{done.output[-800:].strip()}")
    return parse(done.output, host)


def observe_hosts(inv: Inventory, hosts: list[str], apps: list[AppSpec], cpu_interval: float
                  ) -> list[tuple[str, list[AppSpec], Observed]]:
    """Each host with its apps and what was read there, all hosts at once; unreachable ones say why."""
    placed = {c.name: c.host for c in inv.customers}
    by_host = {name: [a for a in apps if placed[a.customer] == name] for name in hosts}
    results = ssh.each_host(hosts, lambda name: observe(inv, name, by_host[name], cpu_interval))
    out = []
    for name in hosts:
        found = results[name]
        if isinstance(found, BaseException):
            message = found.format_message() if isinstance(found, HostctlError) else f"{type(found).__name__}: {found}"
            found = Observed(now=0.0, emperor=None, emperor_error=f"host {name!r}: {message}")
        out.append((name, by_host[name], found))
    return out

