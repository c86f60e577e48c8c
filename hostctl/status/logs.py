"""`hostctl logs`: a customer's uWSGI or nginx logs, the last lines and then following them.

Which files: ``log_files`` maps a customer (and optionally one app) to the
paths ``layout`` gives every app: the vassal's ``logto`` file, or nginx's
access and error logs. Following works like ``tail -F``: uWSGI's
``log-maxsize`` rotates by renaming the file and opening a new one at the same
path, so a ``Follower`` notices the new inode (or a truncation), drains what
is left of the old file and continues at the start of the new one.

hostctl runs as root and the app's log lies in a directory the customer
writes, so every open goes through ``securefs.open_regular``: no symlink is
followed, only regular files are read, a FIFO cannot block, and no read
takes more than ``TAIL_MAX``/``READ_MAX`` bytes at a time.
"""

from __future__ import annotations

import errno
import os
import time
from dataclasses import dataclass
from typing import BinaryIO, Callable, Iterable

from hostctl.render import layout
from hostctl.engine.appagent import CONTROL, for_terminal  # noqa: F401 - `hostctl logs` shows them escaped too
from hostctl.engine.core import securefs
from hostctl.errors import HostctlError
from hostctl.inventory.spec import AppSpec, Inventory

BLOCK = 8192
TAIL_MAX = 1 << 20  # the last lines come from at most this many bytes at the end of a file
READ_MAX = 1 << 20  # a follower reads at most this much per file per round


@dataclass(frozen=True)
class LogFile:
    label: str  # "acme/web" or "acme/web access"
    path: str
    root: str | None = None  # a trusted directory above it (log_dir; default: its own directory)

    def open(self) -> BinaryIO:
        """Open for reading without following a symlink below ``root``; regular files only, never blocking."""
        root = self.root or os.path.dirname(self.path)
        return os.fdopen(securefs.open_regular(root, os.path.relpath(self.path, root)), "rb")


def log_files(inv: Inventory, customer: str, app: str | None = None, nginx: bool = False,
              held: Iterable[AppSpec] = ()) -> list[LogFile]:
    """``held``: the live apps of customers held back by a broken inventory file (``state.held_apps``)."""
    spec = inv.customer(customer)
    own = list(spec.apps) if spec is not None else [a for a in held if a.customer == customer]
    if spec is None and customer not in inv.held:
        known = ", ".join(sorted([c.name for c in inv.customers] + list(inv.held))) or "none"
        raise HostctlError(f"no such customer: {customer!r} (known: {known})")
    apps = [a for a in own if app is None or a.name == app]
    if not apps:
        raise HostctlError(f"customer {customer!r} has no app {app!r} (its apps: {', '.join(a.name for a in own) or 'none live'})")
    out = []
    for a in apps:
        paths = layout.app_paths(inv.settings, customer, a.name)
        if nginx:
            out += [LogFile(f"{customer}/{a.name} access", paths.access_log, inv.settings.log_dir),
                    LogFile(f"{customer}/{a.name} error", paths.error_log, inv.settings.log_dir)]
        else:
            out.append(LogFile(f"{customer}/{a.name}", paths.log, inv.settings.log_dir))
    return out


def last_lines(fh: BinaryIO, n: int) -> tuple[list[bytes], int]:
    """The last ``n`` lines of an open file (reading backwards in blocks) and the offset of its end."""
    end = fh.seek(0, os.SEEK_END)
    if n <= 0:
        return [], end
    data = b""
    pos = end
    while pos > 0 and data.count(b"\n") <= n and end - pos < TAIL_MAX:
        step = min(BLOCK, pos)
        pos -= step
        fh.seek(pos)
        data = fh.read(step) + data
    lines = data.splitlines(keepends=True)
    return lines[-n:], end


class Follower:
    """New bytes of one log file across rotations (rename + new file) and truncation."""

    def __init__(self, path: str, fh: BinaryIO | None = None, offset: int = 0, log: LogFile | None = None):
        self.path = path
        self.log = log or LogFile(path, path)
        self.fh = fh
        self.ino = os.fstat(fh.fileno()).st_ino if fh else None
        if fh is not None:
            fh.seek(offset)

    def _open(self) -> bool:
        try:
            self.fh = self.log.open()
        except OSError:
            return False
        self.ino = os.fstat(self.fh.fileno()).st_ino
        return True

    def read(self) -> bytes:
        """Everything written since the last call (complete or not: a partial line is passed on)."""
        if self.fh is None and not self._open():
            return b""
        assert self.fh is not None
        out = self.fh.read(READ_MAX)
        if len(out) == READ_MAX:
            return out  # more to come: the next round goes on from here
        try:
            st = os.lstat(self.path)
        except OSError:
            return out  # renamed away and not yet recreated: keep reading the old file
        if st.st_ino != self.ino:  # rotated: drain the old file, then start the new one
            out += self.fh.read(READ_MAX)
            self.fh.close()
            self.fh = None
            if self._open():
                out += self.fh.read(READ_MAX)  # type: ignore[union-attr]
        elif st.st_size < self.fh.tell():  # truncated in place
            self.fh.seek(0)
            out += self.fh.read(READ_MAX)
        return out

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()
            self.fh = None


def show(files: list[LogFile], lines: int, emit: Callable[[str], None]) -> tuple[list[Follower], list[str]]:
    """Emit the last ``lines`` of each file (with a header when there are several).

    Returns followers positioned at each file's end, and notes about files that
    do not exist (yet): a follower waits for those to appear.
    """
    followers, missing = [], []
    many = len(files) > 1
    for log in files:
        try:
            fh = log.open()
        except FileNotFoundError:
            missing.append(f"{log.path} does not exist yet (the app has not started or logged anything)")
            followers.append(Follower(log.path, log=log))
            continue
        except securefs.NotRegular:
            raise HostctlError(f"cannot read {log.path}: not a regular file (hostctl reads only regular files there)") from None
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise HostctlError(f"cannot read {log.path}: it or a directory above it is a symlink (never followed)") from None
            raise HostctlError(f"cannot read {log.path}: {exc.strerror}") from None
        tail, end = last_lines(fh, lines)
        if many:
            emit(f"==> {log.label}: {log.path} <==\n")
        emit(b"".join(tail).decode("utf-8", errors="replace"))
        if tail and not tail[-1].endswith(b"\n"):
            emit("\n")
        followers.append(Follower(log.path, fh, end, log))
    return followers, missing


def follow(files: Iterable[LogFile], followers: list[Follower], emit: Callable[[str], None],
           stop: Callable[[], bool] = lambda: False, interval: float = 0.2) -> None:
    """Emit new lines as they are written, prefixed by the file's label when there are several."""
    files = list(files)
    prefix = len(files) > 1
    pending = [b""] * len(files)
    try:
        while not stop():
            for i, (log, follower) in enumerate(zip(files, followers)):
                data = pending[i] + follower.read()
                if not data:
                    continue
                complete, sep, rest = data.rpartition(b"\n")
                pending[i] = rest
                if sep:
                    text = (complete + sep).decode("utf-8", errors="replace")
                    emit("".join(f"{log.label}: {line}\n" for line in text.splitlines()) if prefix else text)
            time.sleep(interval)
    finally:
        for follower in followers:
            follower.close()
