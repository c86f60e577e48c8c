"""Wait until what apply wrote is really live: standard library only (runs on every host).

Three waits. ``reload_and_wait``: a graceful nginx reload has taken over.
``wait_listening``: new vassals have bound their sockets, so nginx, reloaded
next, never routes to a socket nobody listens on (measured on a loaded machine:
5 of 50 requests for a just-added customer got 502 without it).
``wait_exited``: the workers of a vassal the Emperor reloads gracefully have
left, so no request is accepted by a worker still running the old code or
environment (measured under load: 1 of 50 requests right after an env change
got the old answer). Reading the stats socket only makes the Emperor rescan
after it has answered, and the vassal's master signals its workers after that.

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

Everything is read from /proc and from the sockets themselves: the master's
children, and whether each old worker still holds a listening socket (a copy of
each of its sockets, ``pidfd_getfd``, asked ``SO_ACCEPTCONN``); a new vassal's
socket is tried with a connect of its own (``listens``). Neither reads the
namespace's socket tables, which any customer can grow (100,000 of one
customer's sockets made each read of /proc/net/unix take 1.6 s). Where an old
worker cannot be asked (not root), its sockets are looked up in
/proc/net/tcp, tcp6 and unix (once per reload), and where its descriptors cannot
be read at all, its title ("worker process is shutting down", which nginx sets
just before it closes its listeners) is the fallback.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import stat
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


def listens(path: str) -> bool:
    """Whether a process listens on the UNIX socket ``path``: connect (and send nothing) through an
    ``O_PATH|O_NOFOLLOW`` descriptor of it, so a symlink the customer put in its directory is never followed.

    The cost does not grow with the host's sockets. Reading /proc/net/unix did: any customer can
    open sockets by the hundred thousand (abstract ones need no file), and with 100,000 of one
    customer's each read took 1.6 s, once per poll of every apply that started a vassal."""
    try:
        fd = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        if not stat.S_ISSOCK(os.fstat(fd).st_mode):
            return False
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_NONBLOCK) as sock:
            try:
                sock.connect(f"/proc/self/fd/{fd}")
            except BlockingIOError:  # its backlog is full: it listens
                return True
            except OSError:  # ECONNREFUSED: a socket file nobody listens on (a stale one)
                return False
            return True
    finally:
        os.close(fd)


def wait_listening(sockets: dict[str, str], failed: Callable[[], set[str]], timeout: float = 30.0,
                   clock: Callable[[], float] = time.monotonic) -> list[str]:
    """Wait until every socket path in ``sockets`` (path -> the vassal it belongs to) is listening.

    ``failed()`` names vassals that will not come up (the Emperor's blacklist; calling it
    also makes the Emperor rescan); they are not waited for. Returns the vassals still
    not listening after ``timeout`` seconds, or that failed.
    """
    deadline = clock() + timeout
    waiting = dict(sockets)
    given_up: list[str] = []
    while waiting:
        waiting = {path: vassal for path, vassal in waiting.items() if not listens(path)}
        if not waiting:
            break
        dead = failed()
        given_up += [vassal for vassal in waiting.values() if vassal in dead]
        waiting = {path: vassal for path, vassal in waiting.items() if vassal not in dead}
        if waiting and clock() > deadline:
            return sorted(given_up + list(waiting.values()))
        time.sleep(POLL * 2)
    return sorted(given_up)


def alive(pid: int) -> bool:
    """``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return False


def uwsgi_workers(master: int) -> set[int]:
    """The worker processes of a uWSGI master: its children running the same command line
    (attached daemons and cron jobs run other commands). Read from /proc, never from the
    vassal's own stats socket, which the customer could answer in its place."""
    try:
        with open(f"/proc/{master}/cmdline", "rb") as fh:
            own = fh.read(65536)
    except OSError:
        return set()
    found = set()
    for pid in children(master):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as fh:
                if fh.read(65536) == own:
                    found.add(pid)
        except OSError:
            continue
    return found


def wait_exited(workers: dict[str, set[int]], timeout: float = 3.0, clock: Callable[[], float] = time.monotonic,
                nudge: Callable[[], None] | None = None) -> list[str]:
    """Wait until none of the pids in ``workers`` (name -> old worker pids) is alive; the names still waiting
    after ``timeout``. An idle worker leaves within milliseconds of its master's signal; a busy one
    finishes its request first but accepts no new one, so the wait is short and bounded (a customer's
    slow request cannot hold up an apply for long)."""
    deadline = clock() + timeout
    waiting = {name: set(pids) for name, pids in workers.items() if pids}
    while waiting:
        waiting = {name: live for name, pids in waiting.items() if (live := {p for p in pids if alive(p)})}
        if not waiting:
            break
        if clock() > deadline:
            return sorted(waiting)
        if nudge is not None:
            nudge()
        time.sleep(POLL * 2)
    return []


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


PIDFD_GETFD = 438  # the syscall's number on every architecture (Linux 5.6)


def held_listeners(pid: int) -> bool | None:
    """Whether ``pid`` holds a listening socket, asked of each of its sockets (``pidfd_getfd``, then
    ``SO_ACCEPTCONN``), so the cost grows with that process's descriptors only, not with the sockets
    customers open on the host; None where it cannot be asked (not root, a kernel before 5.6)."""
    import ctypes

    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return False
    except OSError:
        return None
    try:
        syscall = ctypes.CDLL(None, use_errno=True).syscall
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                if not os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:["):
                    continue
            except OSError:
                continue
            copy = syscall(PIDFD_GETFD, pidfd, int(fd), 0)
            if copy < 0:
                if ctypes.get_errno() in (errno.EBADF, errno.ESRCH):  # closed meanwhile, or the process left
                    continue
                return None
            with socket.socket(fileno=copy) as sock:  # our copy: closing it leaves theirs open
                if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
                    return True
        return False
    except FileNotFoundError:
        return False
    except OSError:
        return None
    finally:
        os.close(pidfd)


def still_accepting(old: set[int], listening: Callable[[], set[str]]) -> set[int]:
    """The old workers that may still accept a connection (``listening``: the namespace's listening
    socket inodes, read only for a worker whose sockets cannot be asked themselves)."""
    out = set()
    for pid in old:
        held = held_listeners(pid)
        if held is not None:
            if held:
                out.add(pid)
            continue
        sockets = _socket_inodes(pid)
        if sockets is None:  # not ours to read: nginx retitles a worker as it closes its listeners
            title = _title(pid)
            if title is not None and "is shutting down" not in title:
                out.add(pid)
        elif sockets & listening():
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
    table: list[set[str]] = []  # the namespace's listening sockets, read once if at all

    def listening() -> set[str]:
        if not table:
            table.append(listening_inodes())
        return table[0]

    waiting = before
    while True:
        waiting = still_accepting(waiting & children(master), listening)  # exited: no longer a child
        if not waiting:
            return True, f"nginx reloaded (pid {master}); its old workers no longer accept connections"
        if clock() > deadline:
            return False, (f"nginx (pid {master}) reloaded, but old worker(s) {', '.join(map(str, sorted(waiting)))} still "
                           f"accept connections with the previous configuration after {timeout:g} s")
        time.sleep(POLL)


def master_from(pid_file: str | None) -> int | None:
    """The pid in ``pid_file`` when that process is alive, else None."""
    if not pid_file:
        return None
    try:
        with open(pid_file, encoding="ascii") as fh:
            pid = int(fh.read().strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None
