"""`hostctl logs` for a multi-host inventory: the customer's logs, read on its server over SSH.

The files are the ones ``logs.log_files`` names, with the host's paths
(``placement.host_inventory``). The server's own ``tail`` shows them: ``tail -n
N`` (with ``==> file <==`` headers when there are several), and ``tail -F`` to
follow, which like the local follower survives uWSGI's rename rotation. Its
output is streamed as it arrives, until the remote tail ends or Ctrl-C (see
``command`` for how the remote tail is stopped then).
"""

from __future__ import annotations

import shlex
import socket
from typing import Callable

import paramiko

from hostctl.errors import HostctlError
from hostctl.inventory import placement
from hostctl.inventory.spec import AppSpec, Inventory
from hostctl.render.identity import host_identity
from hostctl.status import logs
from hostctl.targets import ssh


def command(paths: list[str], lines: int, follow: bool, as_user: str | None = None) -> str:
    """The shell command run on the server (pure).

    Following, the tail runs in the background while the shell waits for the
    channel's stdin to close: when hostctl goes (Ctrl-C, killed, connection
    lost), sshd closes it and the tail is stopped instead of lingering there.

    ``as_user``: the customer's own Unix user (per-customer hosts). The app's log
    lies in a directory the customer writes, and tail follows symlinks, so it runs
    as the customer (``runuser``): a symlink it planted reaches only what the
    customer could read anyway, never root's files (README: Security model).
    """
    prefix = ["runuser", "-u", shlex.quote(as_user), "--"] if as_user else []
    tail = " ".join([*prefix, "tail", *(["-F"] if follow else []), "-n", str(lines), "--", *map(shlex.quote, paths)])
    return f"{tail} & read _; kill $! 2>/dev/null" if follow else tail


def host_of(inv: Inventory, customer: str) -> str:
    spec = inv.customer(customer)
    if spec is None:
        known = ", ".join(c.name for c in inv.customers) or "none"
        raise HostctlError(f"no such customer: {customer!r} (known: {known})")
    if spec.host is None:
        raise HostctlError(f"customer {customer!r} has no host")
    return spec.host


def find_held(inv: Inventory, customer: str, say: Callable[[str], None]) -> tuple[str, list[AppSpec], str | None]:
    """A customer held back by its broken inventory file: its host (every host is asked: the file cannot say),
    its live apps there (from that host's manifest) and its Unix user (from its runtime record there)."""
    from hostctl.status import remote as status_remote

    found, unread = status_remote.find_held(inv, customer, sorted(inv.settings.hosts))
    for why in unread:
        say(f"note: {why}")
    if not found:
        raise HostctlError(f"customer {customer!r} is held back by its own inventory file, and no reachable host has "
                           f"live apps of it")
    host, here = found[0]
    problems = "; ".join(str(p) for p in inv.held[customer])
    say(f"note: {customer} is held back by its own inventory file ({problems}); its live apps on host {host!r}:")
    return host, list(here.apps), here.user


def run(inv: Inventory, customer: str, app: str | None, nginx: bool, lines: int, follow: bool,
        emit: Callable[[str], None], say: Callable[[str], None] = lambda _: None) -> int:
    """Show (and follow) the customer's logs on its host; the remote tail's exit status."""
    spec = inv.customer(customer)
    if spec is None and customer in inv.held:
        host, held, held_user = find_held(inv, customer, say)
    else:
        host, held, held_user = host_of(inv, customer), [], None
    files = logs.log_files(placement.host_inventory(inv, host), customer, app, nginx, held)
    per_customer = host_identity(inv.settings, host).per_customer
    user = spec.user if spec is not None else held_user
    if per_customer and user is None:  # never tail in a customer's directory as root
        raise HostctlError(f"the Unix user of {customer!r} is unknown (its runtime record on host {host!r} names none)")
    as_user = user if per_customer else None
    conn = ssh.connect(inv.settings.hosts[host], str(inv.root), host)
    try:
        conn.open()
    except (OSError, socket.timeout, paramiko.SSHException) as exc:
        conn.close()
        raise HostctlError(f"cannot connect to host {host!r} ({conn.user}@{conn.host}:{conn.port}): {exc or type(exc).__name__}") from exc
    try:
        with ssh.open_command(conn, command([f.path for f in files], lines, follow, as_user), combine_stderr=True) as channel:
            if not follow:
                channel.shutdown_write()
            while True:
                chunk = channel.recv(65536)
                if not chunk:
                    break
                emit(chunk.decode("utf-8", errors="replace"))
            return channel.recv_exit_status()
    finally:
        conn.close()
