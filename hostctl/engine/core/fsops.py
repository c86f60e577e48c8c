"""Crash-safe file operations for the live directories.

Every write goes to a temporary name in the same directory (one that ends in
neither a vassal extension nor ``.conf``), is fsynced, then ``os.replace``d
over the target, so the Emperor and nginx only ever see a whole old or a whole
new file. The Emperor compares mtimes in whole seconds with a strict ``>``, so
a rewritten file always gets an mtime second later than the one it replaces.
"""

from __future__ import annotations

import os

TMP_MARK = ".hostctl-tmp-"


def temp_name(path: str) -> str:
    head, tail = os.path.split(path)
    return os.path.join(head, f".{tail}{TMP_MARK}{os.getpid()}")


def write_atomic(path: str, content: bytes, mode: int, uid: int = -1, gid: int = -1, durable: bool = True) -> None:
    """Replace ``path`` with ``content`` atomically; its new mtime second is after the old one's.

    ``durable=False`` skips the fsync: for caches whose readers verify content (history's blobs).
    """
    tmp = temp_name(path)
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        view = memoryview(content)
        while view:
            view = view[os.write(fd, view):]
        if uid != -1 or gid != -1:
            os.fchown(fd, uid, gid)
        os.fchmod(fd, mode)
        if durable:
            os.fsync(fd)
    finally:
        os.close(fd)
    try:
        old = os.stat(path).st_mtime
    except FileNotFoundError:
        old = None
    # Compare the new file's own mtime (set while it was written), not the clock now: under load a
    # second can pass between the write and this check, and the Emperor would miss the change.
    if old is not None and int(os.stat(tmp).st_mtime) <= int(old):
        later = int(old) + 1
        os.utime(tmp, (later, later))
    os.replace(tmp, path)


def remove(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def clean_temp_files(directory: str) -> list[str]:
    """Remove temporary files an interrupted apply left behind (only hostctl's own)."""
    removed = []
    try:
        entries = os.scandir(directory)
    except FileNotFoundError:
        return removed
    with entries:
        for entry in entries:
            if entry.name.startswith(".") and TMP_MARK in entry.name and entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
                removed.append(entry.path)
    return removed


def ensure_dir(path: str, mode: int, uid: int = -1, gid: int = -1) -> None:
    """Create ``path`` if needed and set its mode and owner (the owner only where we may)."""
    try:
        st = os.stat(path)  # the common case at scale: it exists and is right (one syscall)
    except FileNotFoundError:
        os.makedirs(path, exist_ok=True)
        st = os.stat(path)
    if (uid != -1 and st.st_uid != uid) or (gid != -1 and st.st_gid != gid):
        os.chown(path, uid, gid)
        st = os.stat(path)  # chown may clear setgid
    if (st.st_mode & 0o7777) != mode:
        os.chmod(path, mode)
