"""On-demand apps: the Emperor holds their socket and starts them on the first request.

uWSGI's per-vassal mechanism is used (``emperor-on-demand-extension = .socket``):
a vassal ``NAME.ini`` with a companion file ``NAME.ini.socket`` that holds a
socket path is not started; the Emperor binds that socket itself and spawns the
vassal on its first connection. The vassal then runs with ``idle`` +
``die-on-idle`` and goes back to sleep after ``idle`` seconds without requests.

The socket is ``run_dir/ondemand/<customer>_<app>.sock`` (``layout``): the
Emperor (root) unlinks, binds and chmods it by path, so it lives in a directory
only root may write, and it is created world-writable (``srw-rw-rw-``) while
anyone who can connect to it can run code as the customer (uwsgi magic
variables), so only nginx's group may enter that directory (root:nginx 0750).

The Emperor reads the companion only when it first sees a vassal, so switching
an existing app between on-demand and always-on means retiring the vassal
(remove its file, wait until the Emperor has let it go) before writing it again.
"""

from __future__ import annotations

import time
from typing import Iterable

from hostctl.plan.diff import Plan

EXTENSION = ".socket"  # emperor-on-demand-extension
KIND = "socket"


def companion(vassal: str) -> str:
    """The companion file naming the on-demand socket of ``vassal``."""
    return vassal + EXTENSION


def content(socket: str) -> str:
    return socket + "\n"


def toggled(plan: Plan) -> list[str]:
    """Vassals that exist and switch between on-demand and always-on in this plan, or whose on-demand
    socket moves (a companion's content changes): the Emperor reads a companion only when it first
    sees a vassal. The socket path is also named in the vassal's comments, so its vassal is rewritten
    in the same plan."""
    vassal_actions = {c.path: c.action for c in plan.changes if c.kind == "vassal"}
    out = []
    for change in plan.changes:
        if change.kind != KIND:
            continue
        vassal = change.path[: -len(EXTENSION)]
        if vassal_actions.get(vassal) not in ("create", "delete"):
            out.append(vassal)
    return sorted(out)


def wait_released(read_stats, address: str, vassals: Iterable[str], timeout: float = 40.0) -> bool:
    """Wait until the Emperor lists none of ``vassals`` (file paths); True when it does not, or is not running.

    ``read_stats(address)`` returns the Emperor's stats (reading them also makes it rescan).
    """
    names = {v.rsplit("/", 1)[-1] for v in vassals}
    deadline = time.monotonic() + timeout
    while True:
        stats = read_stats(address)
        if stats is None:
            return True
        if not names & {v.get("id") for v in stats.get("vassals", [])}:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
