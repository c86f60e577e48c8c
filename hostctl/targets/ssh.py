"""SSH to the inventory's hosts with Fabric: connections, one command, many hosts at once.

The thin effect layer under ``deploy.py``, and the one runner of every remote
command (deploy, plan/rollback/status/logs --host, bootstrap, release, run).
``connect`` builds a lazy Fabric ``Connection`` from a host's settings; for a host
with ``become: sudo`` every command runs as root through ``sudo -n`` (never a
password prompt: a sudo that wants one, or no sudo, is an error naming the
host; ``become_command``). ``execute`` runs one command there with
an optional payload on its stdin (streamed straight into the SSH channel, so a
whole deploy is a single round trip; invoke's stdin pump reads 1,000 bytes at a
time with a sleep in between). ``each_host`` runs a function for every host in
parallel threads, like Fabric's ``ThreadingGroup``, tries every host and returns
a per-host map of results or exceptions instead of stopping at the first failure.
"""

from __future__ import annotations

import os
import shlex
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
BECOME_FAILED = 125  # exit status of a command whose `become` failed before it ran
BECOME_MARK = "hostctl-become: "  # starts the line on stderr that says why
T = TypeVar("T")


class HostConnection(Connection):
    """A Fabric connection that knows the host's inventory name and how it becomes root there."""

    # class attributes: invoke's Context turns unknown attribute sets into config entries
    label: str = ""
    become: str | None = None


def connect(host: Host, inventory_root: str, name: str = "") -> HostConnection:
    """A connection to ``host`` (opened on first use), called ``name`` in errors. Paths in the host's settings are relative to the inventory."""
    connect_kwargs: dict = {}
    if host.key_file:
        connect_kwargs["key_filename"] = os.path.join(inventory_root, host.key_file)
    conn = HostConnection(host.address, user=host.user, port=host.port, connect_timeout=CONNECT_TIMEOUT,
                          connect_kwargs=connect_kwargs)
    where = f"{host.user}@{host.address}:{host.port}"
    conn.label = f"host {name!r} ({where})" if name else where
    conn.become = host.become
    if host.known_hosts:
        conn.client.load_host_keys(os.path.join(inventory_root, host.known_hosts))
        conn.client.set_missing_host_key_policy(paramiko.RejectPolicy())
    return conn


def become_command(command: str, become: str | None, label: str) -> str:
    """``command`` as run on a host that becomes root with ``become`` (None: as it is).

    ``sudo -n`` never prompts: when sudo wants a password (or is missing) the
    command does not run and the shell exits ``BECOME_FAILED`` with one line on
    stderr, ``BECOME_MARK`` then the reason naming the host (``label``). The
    command reaches sudo's ``sh -c`` as one quoted argument, byte for byte; its
    stdin (a deploy's payload) passes through.
    """
    if become is None:
        return command
    q = shlex.quote
    missing = f"{label}: become: sudo, but sudo is not installed there"
    refused = f"{label}: become: sudo: 'sudo -n' refused to run a command as root"
    advice = "give this user passwordless sudo (NOPASSWD) on that host"
    return (f"if ! command -v sudo >/dev/null 2>&1; then printf '%s%s\\n' {q(BECOME_MARK)} {q(missing)} >&2; exit {BECOME_FAILED}; fi; "
            f"if ! hostctl_sudo=$(sudo -n -- sh -c 'exit 0' 2>&1 </dev/null); then "
            f"printf '%s%s (%s); %s\\n' {q(BECOME_MARK)} {q(refused)} \"$hostctl_sudo\" {q(advice)} >&2; exit {BECOME_FAILED}; fi; "
            f"exec sudo -n -- sh -c {q(command)}")


def become_failure(errors: str) -> str | None:
    """Why ``become`` failed, from a command's stderr (None: it did not fail)."""
    at = errors.find(BECOME_MARK)
    if at < 0 or (at > 0 and errors[at - 1] != "\n"):
        return None
    return " ".join(line.strip() for line in errors[at + len(BECOME_MARK):].splitlines() if line.strip())


def open_command(conn: Connection, command: str, combine_stderr: bool = False) -> paramiko.Channel:
    """A new SSH channel on ``conn`` running ``command`` (as root through sudo if the host says ``become``)."""
    try:
        conn.open()
        channel = conn.client.get_transport().open_session(timeout=CONNECT_TIMEOUT)
    except (OSError, socket.timeout, paramiko.SSHException) as exc:
        raise HostctlError(f"cannot connect to {_where(conn)}: {exc or type(exc).__name__}") from exc
    channel.set_combine_stderr(combine_stderr)
    channel.exec_command(become_command(command, getattr(conn, "become", None), getattr(conn, "label", "") or _where(conn)))
    return channel


def _where(conn: Connection) -> str:
    return f"{conn.user}@{conn.host}:{conn.port}"


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
    """Run ``command``, handing its stdout and stderr over as they arrive; its exit status.

    Raises ``HostctlError`` naming the host when it cannot be reached or its ``become`` failed."""
    head = bytearray()  # the start of stderr, where a failed become says why

    def errors(data: bytes) -> None:
        if len(head) < 4096:
            head.extend(data[:4096 - len(head)])
        on_err(data)

    deadline = time.monotonic() + timeout
    channel = open_command(conn, command)
    with channel:
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
                errors(channel.recv_stderr(65536))
                busy = True
            if not busy:
                # EOF follows the last byte of output (an exit status may come before it: sshd can still
                # hold output back for the window), so only EOF with empty buffers means all is read
                if (channel.eof_received or channel.closed) and not channel.recv_ready() and not channel.recv_stderr_ready():
                    break
                if time.monotonic() > deadline:
                    raise HostctlError(f"{conn.host}:{conn.port}: the command did not finish within {timeout:.0f} s")
                time.sleep(0.002)
        status = channel.recv_exit_status()
    if status == BECOME_FAILED and getattr(conn, "become", None):
        why = become_failure(head.decode("utf-8", errors="replace"))
        if why:
            raise HostctlError(why)
    return status


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
