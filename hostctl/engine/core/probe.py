"""HTTP probes after going live: is each changed customer's app really answering through nginx?

A target is fetched through nginx with its own Host header; until its timeout
has passed, other answers (502 while the vassal starts) are retried. The
control side decides the targets (apps with ``probe:`` in the inventory); a
customer whose probe fails is rolled back by ``apply.py``.
"""

from __future__ import annotations

import http.client
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

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
        response.read(1 << 20)  # a customer's app answers: read a bounded amount
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
