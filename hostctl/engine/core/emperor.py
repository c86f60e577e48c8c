"""The uWSGI Emperor on this server, through its stats socket.

Reading the Emperor's stats socket makes it rescan its directory at once, so the
engine does that right after writing vassals: a new customer is served in tens
of milliseconds instead of waiting for the next poll. On-demand switches wait
until the Emperor has let go of a vassal (``wait_released``).
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any, Callable, Iterable

LIMIT = 64 << 20  # the Emperor's stats are root's, but never read without a bound


def read_socket(address: str, timeout: float = 2.0) -> bytes | None:
    """Everything a UNIX stats socket sends on one connection, or None when nothing answers."""
    chunks, size = [], 0
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(address)
            while size < LIMIT:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
    except OSError:
        return None
    return b"".join(chunks)


def read_stats(address: str, timeout: float = 2.0) -> dict[str, Any] | None:
    """The Emperor's stats JSON, or None when nothing answers."""
    data = read_socket(address, timeout)
    if not data:
        return None
    try:
        parsed = json.loads(data.decode("utf-8", errors="replace"))
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def poke(address: str, timeout: float = 2.0) -> bool:
    """Make the Emperor rescan now. True when it answered."""
    return read_socket(address, timeout) is not None


def wait_released(read: Callable[[str], dict[str, Any] | None], address: str, vassals: Iterable[str],
                  timeout: float = 40.0) -> bool:
    """Wait until the Emperor lists none of ``vassals`` (file paths); True when it does not, or is not running.

    ``read(address)`` returns the Emperor's stats (``read_stats``; reading them also makes it rescan).
    """
    names = {v.rsplit("/", 1)[-1] for v in vassals}
    deadline = time.monotonic() + timeout
    while True:
        stats = read(address)
        if stats is None:
            return True
        if not names & {v.get("id") for v in stats.get("vassals", []) if isinstance(v, dict)}:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
