"""Read a file that a customer may control, as root, without blocking, without following its last symlink, and with a size cap.

A customer owns its chdir, virtualenv and anything its user can write, so a path
hostctl reads there may be a FIFO (an ordinary ``open`` blocks until someone
writes), ``/dev/zero`` or a huge file (a plain ``read`` never ends or eats the
host's memory), or a symlink to a file the customer may not read itself.
``read_regular`` refuses everything but a regular file of at most ``limit``
bytes: the type is checked with ``stat`` before opening and with ``fstat`` on
the descriptor (opened ``O_NONBLOCK``, so even a FIFO swapped in between cannot
block), and ``nofollow`` adds ``O_NOFOLLOW`` where the last path component is
the customer's. A refusal is an ``OSError`` whose ``strerror`` says why, so
callers report it like any unreadable file.
"""

from __future__ import annotations

import errno
import os
import stat

KIB = 1 << 10
MIB = 1 << 20
KINDS = {stat.S_IFIFO: "a FIFO", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
         stat.S_IFSOCK: "a socket", stat.S_IFDIR: "a directory", stat.S_IFLNK: "a symbolic link"}


class Refused(OSError):
    """The file is not something root may read for a customer (wrong type, too large, a symlink)."""

    def __init__(self, code: int, why: str, path: str):
        super().__init__(code, why, path)


def _kind(mode: int) -> str:
    return KINDS.get(stat.S_IFMT(mode), "not a regular file")


def read_regular(path: str, limit: int, *, nofollow: bool = False) -> bytes:
    """The content of the regular file ``path`` (at most ``limit`` bytes); ``Refused`` or ``OSError`` otherwise."""
    st = os.lstat(path) if nofollow else os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise Refused(errno.EINVAL, f"is {_kind(st.st_mode)}, not a regular file", path)
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC | (os.O_NOFOLLOW if nofollow else 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if exc.errno == errno.ELOOP and nofollow:
            raise Refused(errno.ELOOP, "is a symbolic link (not followed)", path) from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise Refused(errno.EINVAL, f"is {_kind(st.st_mode)}, not a regular file", path)
        if st.st_size > limit:
            raise Refused(errno.EFBIG, f"is larger than {limit} bytes ({st.st_size})", path)
        chunks, total = [], 0
        while True:
            chunk = os.read(fd, min(64 * KIB, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:  # grew while being read
                raise Refused(errno.EFBIG, f"is larger than {limit} bytes", path)
        return b"".join(chunks)
    finally:
        os.close(fd)
