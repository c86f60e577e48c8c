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

EXTENSION = ".socket"  # emperor-on-demand-extension
KIND = "socket"


def companion(vassal: str) -> str:
    """The companion file naming the on-demand socket of ``vassal``."""
    return vassal + EXTENSION


def content(socket: str) -> str:
    return socket + "\n"


from hostctl.engine.core.apply import toggled  # noqa: E402,F401
from hostctl.engine.core.emperor import wait_released  # noqa: E402,F401
