"""Talk to a running uWSGI Emperor through its stats socket.

Reading the Emperor's stats socket makes it rescan its directory at once, so
hostctl does that right after writing vassals: a new customer is served in
tens of milliseconds instead of waiting for the next poll.
"""

from __future__ import annotations

import json
from typing import Any

from hostctl.engine import status_probe  # stdlib-only, so status --host can run it on a server


def read_stats(address: str, timeout: float = 2.0) -> dict[str, Any] | None:
    """The Emperor's (or a vassal's) stats JSON, or None when nothing answers."""
    data = _read(address, timeout)
    if not data:
        return None
    try:
        return json.loads(data.decode("utf-8", errors="replace"))
    except ValueError:
        return None


def poke(address: str, timeout: float = 2.0) -> bool:
    """Make the Emperor rescan now. True when it answered."""
    return _read(address, timeout) is not None


def _read(address: str, timeout: float) -> bytes | None:
    return status_probe.read_socket(address, timeout)[0]
