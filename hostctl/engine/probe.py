"""Post-reload HTTP probes: is each changed customer's app really answering through nginx?

An app with ``probe: {path: /, status: 200, timeout: 5}`` in the inventory is
fetched through nginx with its own Host header after apply has reloaded
everything; until ``timeout`` seconds have passed, other answers (502 while the
vassal starts) are retried. A customer whose probe fails is rolled back to its
last-known-good files by ``safeapply.py``. Apps without ``probe`` are never
probed. ``targets`` (pure) decides what to probe; ``run`` does the HTTP.
"""

from __future__ import annotations

import http.client
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterable

from hostctl.inventory.spec import Inventory

PARALLEL = 16


@dataclass(frozen=True)
class Target:
    customer: str
    app: str
    host: str  # the Host header
    path: str
    status: int
    timeout: float


@dataclass(frozen=True)
class Outcome:
    target: Target
    ok: bool
    got: str  # the last status seen, or the last error


def host_header(domain: str) -> str:
    """A name the app's server block answers to (a wildcard gets a label)."""
    return "probe" + domain[1:] if domain.startswith("*") else domain


def targets(inventory: Inventory, customers: Iterable[str]) -> list[Target]:
    wanted = set(customers)
    out = []
    for customer in inventory.customers:
        if customer.name not in wanted:
            continue
        for app in customer.apps:
            probe = app.config.probe
            if probe is None or not app.config.enabled:
                continue
            out.append(Target(customer.name, app.name, host_header(app.config.domains[0]), probe.path, probe.status, probe.timeout))
    return out


def address(listen: str) -> tuple[str, int]:
    """Where to reach nginx from this host, from its ``listen`` setting."""
    host, sep, port = listen.rpartition(":")
    if not sep:
        return "127.0.0.1", int(listen)
    host = host.strip("[]")
    return ("127.0.0.1" if host in ("", "0.0.0.0", "*") else "::1" if host == "::" else host), int(port)


def fetch(where: tuple[str, int], target: Target, timeout: float) -> int:
    conn = http.client.HTTPConnection(where[0], where[1], timeout=timeout)
    try:
        conn.request("GET", target.path, headers={"Host": target.host, "User-Agent": "hostctl-probe"})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def check(where: tuple[str, int], target: Target, interval: float = 0.1) -> Outcome:
    deadline = time.monotonic() + target.timeout
    got = "no answer"
    while True:
        left = deadline - time.monotonic()
        try:
            status = fetch(where, target, max(0.1, min(left, target.timeout)))
            got = f"HTTP {status}"
            if status == target.status:
                return Outcome(target, True, got)
        except (OSError, http.client.HTTPException) as exc:
            got = f"{type(exc).__name__}: {exc}"
        if time.monotonic() + interval > deadline:
            return Outcome(target, False, got)
        time.sleep(interval)


def run(listen: str, probes: list[Target]) -> list[Outcome]:
    """Probe every target (in parallel); one outcome each, in order."""
    if not probes:
        return []
    where = address(listen)
    with ThreadPoolExecutor(max_workers=min(PARALLEL, len(probes))) as pool:
        return list(pool.map(lambda t: check(where, t), probes))
