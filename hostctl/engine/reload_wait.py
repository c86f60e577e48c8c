"""Wait until a graceful nginx reload has really taken over: standard library only (runs on every host).

``nginx -s reload`` (SIGHUP) returns at once. The master then starts new
workers and tells the old ones to quit; an old worker closes its listening
sockets only when it handles that message, and until then it still accepts
connections and answers them with the old configuration (measured: a domain
just added got 404 for 21 of 50 requests fired right after apply returned; a
customer just removed got 502 for 9 of 50, from old workers routing to its
stopped vassal). So "reloaded" means: new workers exist, and every old worker
has exited or holds no listening socket any more. Old workers may go on
finishing requests they already accepted (and close idle keep-alive
connections); they never accept a new one.

Everything is read from /proc: the master's children, each old worker's open
sockets, and the listening sockets of the network namespace
(/proc/net/tcp, tcp6, unix). Where an old worker's file descriptors cannot be
read (not root), its title ("worker process is shutting down", which nginx sets
just before it closes its listeners) is the fallback.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Callable

POLL = 0.005


def children(pid: int) -> set[int]:
    """The pids of ``pid``'s child processes."""
    found: set[int] = set()
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/children", encoding="ascii") as fh:
                found.update(int(p) for p in fh.read().split())
        except (OSError, ValueError):
            continue
    return found


def listening_inodes() -> set[str]:
    """Socket inodes in LISTEN state in this network namespace (TCP over IPv4 and IPv6, and UNIX)."""
    inodes: set[str] = set()
    for name in ("tcp", "tcp6"):
        try:
            with open(f"/proc/net/{name}", encoding="ascii") as fh:
                next(fh, None)
                for line in fh:
                    fields = line.split()
                    if len(fields) > 9 and fields[3] == "0A":  # TCP_LISTEN
                        inodes.add(fields[9])
        except OSError:
            continue
    try:
        with open("/proc/net/unix", encoding="ascii", errors="replace") as fh:
            next(fh, None)
            for line in fh:
                fields = line.split()
                if len(fields) > 6 and int(fields[3], 16) & 0x10000:  # __SO_ACCEPTCON: listening
                    inodes.add(fields[6])
    except (OSError, ValueError):
        pass
    return inodes


def _socket_inodes(pid: int) -> set[str] | None:
    """Inodes of the sockets ``pid`` has open; None when they cannot be read (gone: empty set)."""
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except FileNotFoundError:
        return set()
    except PermissionError:
        return None
    out = set()
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            out.add(target[8:-1])
    return out


def _title(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read(4096).replace(b"\0", b" ").decode("utf-8", "replace")
    except OSError:
        return None


def still_accepting(old: set[int], listening: set[str]) -> set[int]:
    """The old workers that may still accept a connection."""
    out = set()
    for pid in old:
        sockets = _socket_inodes(pid)
        if sockets is None:  # not ours to read: nginx retitles a worker as it closes its listeners
            title = _title(pid)
            if title is not None and "is shutting down" not in title:
                out.add(pid)
        elif sockets & listening:
            out.add(pid)
    return out


def reload_and_wait(master: int, send: Callable[[], None] | None = None, timeout: float = 10.0,
                    clock: Callable[[], float] = time.monotonic) -> tuple[bool, str]:
    """Reload the nginx whose master is ``master`` (``send``, or SIGHUP) and wait until it has taken over.

    Returns (done, what happened). Not done: no new workers appeared (nginx kept
    its old configuration; see its error log), or old workers still held their
    listening sockets after ``timeout`` seconds.
    """
    before = children(master)
    if send is None:
        os.kill(master, signal.SIGHUP)
    else:
        send()
    deadline = clock() + timeout
    while not (children(master) - before):
        if clock() > deadline:
            return False, f"nginx (pid {master}) did not start new workers within {timeout:g} s of the reload; see its error log"
        time.sleep(POLL)
    listening = listening_inodes()
    waiting = before
    while True:
        waiting = still_accepting(waiting & children(master), listening)  # exited: no longer a child
        if not waiting:
            return True, f"nginx reloaded (pid {master}); its old workers no longer accept connections"
        if clock() > deadline:
            return False, (f"nginx (pid {master}) reloaded, but old worker(s) {', '.join(map(str, sorted(waiting)))} still "
                           f"accept connections with the previous configuration after {timeout:g} s")
        time.sleep(POLL)
