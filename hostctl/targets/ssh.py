"""SSH to the inventory's hosts with Fabric: connections, one command, many hosts at once.

The thin effect layer under ``deploy.py``. ``connect`` builds a lazy Fabric
``Connection`` from a host's settings. ``execute`` runs one command there with
an optional payload on its stdin (streamed straight into the SSH channel, so a
whole deploy is a single round trip; invoke's stdin pump reads 1,000 bytes at a
time with a sleep in between). ``each_host`` runs a function for every host in
parallel threads, like Fabric's ``ThreadingGroup``, tries every host and returns
a per-host map of results or exceptions instead of stopping at the first failure.
"""

from __future__ import annotations

import os
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Generic, Iterable, TypeVar

import paramiko
from fabric import Connection

from hostctl.errors import HostctlError
from hostctl.inventory.schema import Host

CONNECT_TIMEOUT = 10
T = TypeVar("T")


def connect(host: Host, inventory_root: str) -> Connection:
    """A Fabric connection to ``host`` (opened on first use). Paths in the host's settings are relative to the inventory."""
    connect_kwargs: dict = {}
    if host.key_file:
        connect_kwargs["key_filename"] = os.path.join(inventory_root, host.key_file)
    conn = Connection(host.address, user=host.user, port=host.port, connect_timeout=CONNECT_TIMEOUT,
                      connect_kwargs=connect_kwargs)
    if host.known_hosts:
        conn.client.load_host_keys(os.path.join(inventory_root, host.known_hosts))
        conn.client.set_missing_host_key_policy(paramiko.RejectPolicy())
    return conn


@dataclass(frozen=True)
class Completed:
    status: int
    output: str  # stdout
    errors: str = ""  # stderr: also whatever the login shell's startup files print there


def execute(conn: Connection, command: str, stdin: bytes | None = None, timeout: float = 600) -> Completed:
    """Run ``command`` on ``conn``'s host, feeding ``stdin``; raise ``HostctlError`` when the host cannot be reached."""
    out, err = bytearray(), bytearray()
    status = stream(conn, command, stdin, out.extend, err.extend, timeout)
    # surrogateescape: the text encodes back to exactly the bytes received (a state listing is hashed)
    return Completed(status, out.decode("utf-8", errors="surrogateescape"), err.decode("utf-8", errors="replace"))


def stream(conn: Connection, command: str, stdin: bytes | None, on_out: Callable[[bytes], object],
           on_err: Callable[[bytes], object], timeout: float = 600) -> int:
    """Run ``command``, handing its stdout and stderr over as they arrive; its exit status."""
    try:
        conn.open()
        channel = conn.client.get_transport().open_session(timeout=CONNECT_TIMEOUT)
    except (OSError, socket.timeout, paramiko.SSHException) as exc:
        raise HostctlError(f"cannot connect to {conn.user}@{conn.host}:{conn.port}: {exc or type(exc).__name__}") from exc
    deadline = time.monotonic() + timeout
    with channel:
        channel.exec_command(command)
        if stdin:
            channel.sendall(stdin)
        channel.shutdown_write()
        # stdout and stderr apart (a login shell may print to stderr before the command runs), both drained
        while True:
            busy = False
            while channel.recv_ready():
                on_out(channel.recv(65536))
                busy = True
            while channel.recv_stderr_ready():
                on_err(channel.recv_stderr(65536))
                busy = True
            if not busy:
                # EOF follows the last byte of output (an exit status may come before it: sshd can still
                # hold output back for the window), so only EOF with empty buffers means all is read
                if (channel.eof_received or channel.closed) and not channel.recv_ready() and not channel.recv_stderr_ready():
                    break
                if time.monotonic() > deadline:
                    raise HostctlError(f"{conn.host}:{conn.port}: the command did not finish within {timeout:.0f} s")
                time.sleep(0.002)
        return channel.recv_exit_status()


class HostResults(dict, Generic[T]):
    """``{host: result or exception}``, as Fabric's ``GroupResult``: every host tried."""

    @property
    def succeeded(self) -> dict[str, T]:
        return {k: v for k, v in self.items() if not isinstance(v, BaseException)}

    @property
    def failed(self) -> dict[str, BaseException]:
        return {k: v for k, v in self.items() if isinstance(v, BaseException)}


def each_host(names: Iterable[str], work: Callable[[str], T]) -> "HostResults[T]":
    """Run ``work(name)`` for every host at once (one thread per host); failures are collected, not raised."""
    names = list(names)
    results: HostResults[T] = HostResults()
    if not names:
        return results
    with ThreadPoolExecutor(max_workers=min(32, len(names)), thread_name_prefix="hostctl-ssh") as pool:
        futures = {name: pool.submit(work, name) for name in names}
        for name, future in futures.items():
            try:
                results[name] = future.result()
            except Exception as exc:  # noqa: BLE001 - reported per host
                results[name] = exc
    return results
