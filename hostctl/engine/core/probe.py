"""HTTP probes after going live: is each changed customer's app really answering through nginx?

A target is fetched through nginx with its own Host header; until its timeout
has passed, other answers (502 while the vassal starts) are retried. The
control side decides the targets (apps with ``probe:`` in the inventory); a
customer whose probe fails is rolled back by ``apply.py``.
"""

from __future__ import annotations

import http.client
import socket
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


STATUS_LINE_MAX = 8 << 10  # the answer is the customer app's: only its status line is read, and at most this much


def fetch(where: tuple[str, int], target: Target, timeout: float) -> int:
    """The HTTP status nginx answers for ``target``; the whole exchange takes at most ``timeout`` seconds.

    Only the status line is read (the app behind nginx is the customer's: its body may be endless
    or trickle byte by byte), then the connection is closed.
    """
    deadline = time.monotonic() + timeout
    request = (f"GET {target.path} HTTP/1.1\r\nHost: {target.host}\r\nUser-Agent: hostctl-probe\r\n"
               "Connection: close\r\n\r\n").encode("ascii")
    head = b""
    try:
        with socket.create_connection(where, timeout=timeout) as sock:
            sock.sendall(request)
            while b"\r\n" not in head:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise socket.timeout()
                sock.settimeout(left)
                chunk = sock.recv(1024)
                if not chunk:
                    raise http.client.RemoteDisconnected("closed without a status line")
                head += chunk
                if len(head) > STATUS_LINE_MAX:
                    raise http.client.BadStatusLine(f"no status line in the first {STATUS_LINE_MAX} bytes")
    except socket.timeout:
        raise socket.timeout(f"no status line within {timeout:.1f} s ({len(head)} bytes)") from None
    parts = head.split(b"\r\n", 1)[0].split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        raise http.client.BadStatusLine(repr(head[:80]))
    return int(parts[1])


def check(where: tuple[str, int], target: Target, interval: float = 0.1) -> Outcome:
    deadline = time.monotonic() + target.timeout
    got = "no answer"
    while True:
        left = deadline - time.monotonic()
        try:
            status = fetch(where, target, max(0.1, left))
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
