"""File operations for root in places a customer can reach: no symlink is ever followed.

hostctl runs as root, and some directories below its trusted roots (``log_dir``,
``run_dir``) belong to customers, who are hostile. Everything here works from a
directory descriptor (``openat``) with ``O_NOFOLLOW``, so a symlink, a FIFO or a
renamed directory planted by a customer is refused instead of followed:

- ``ensure_dir``: make a directory, and give it its owner and mode through its
  descriptor (``fchown``/``fchmod``), never by path;
- ``take_back``: when root takes over a directory a customer used to own (an
  installation from before the security model), remove what the customer could
  have planted for root to open;
- ``open_regular``: open a file for reading, regular files only, without
  blocking (a FIFO would make ``open`` wait for a writer forever).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

from hostctl.engine.core.errors import EngineError

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def open_dir(path: str) -> int:
    """A trusted directory (one the operator configured, may itself be a symlink), opened for ``*at`` calls."""
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


def open_dir_at(parent: int, name: str) -> int:
    """``name`` inside ``parent``, only if it is a real directory (a symlink raises ELOOP/ENOTDIR)."""
    return os.open(name, DIR_FLAGS, dir_fd=parent)


@dataclass(frozen=True)
class Ensured:
    fd: int  # the directory, open (the caller closes it)
    previous_uid: int | None  # its owner before, None when it was just made


def ensure_dir(parent: int, name: str, mode: int, uid: int = -1, gid: int = -1, retry: bool = True,
               shown: str | None = None) -> Ensured:
    """Make ``name`` in ``parent`` (if missing) and give it ``mode``, ``uid``, ``gid`` through its descriptor.

    A directory that changes hands is first closed to everyone but its owner
    (``fchmod 0700``), so there is no moment where the new owner's mode applies
    with the old owner still able to write. In a sticky directory that others may
    write (a customer's /tmp), a symlink or file planted where root wants its own
    directory is removed first (once). ``shown``: the path to name in an error.
    """
    made = False
    try:
        os.mkdir(name, 0o700, dir_fd=parent)
        made = True
    except FileExistsError:
        pass
    try:
        fd = open_dir_at(parent, name)
    except OSError as exc:
        if retry and uid == 0 and os.fstat(parent).st_mode & stat.S_ISVTX:
            planted = os.stat(name, dir_fd=parent, follow_symlinks=False)
            if not stat.S_ISDIR(planted.st_mode):
                os.unlink(name, dir_fd=parent)
                return ensure_dir(parent, name, mode, uid, gid, retry=False, shown=shown)
        where = shown or f"{name!r} in directory fd {parent}"
        raise EngineError(f"{where} is not a directory hostctl can use ({exc.strerror}); remove it by hand") from None
    try:
        st = before = os.fstat(fd)
        if (uid != -1 and st.st_uid != uid) or (gid != -1 and st.st_gid != gid):
            os.fchmod(fd, 0o700)
            os.fchown(fd, uid, gid)
            st = os.fstat(fd)
        if stat.S_IMODE(st.st_mode) != mode:
            os.fchmod(fd, mode)
    except BaseException:
        os.close(fd)
        raise
    return Ensured(fd, None if made else before.st_uid)


def owner_before(parent: int, name: str) -> int | None:
    """The owner of ``name`` in ``parent`` (not following a symlink), None if it does not exist."""
    try:
        return os.stat(name, dir_fd=parent, follow_symlinks=False).st_uid
    except FileNotFoundError:
        return None


def take_back(fd: int, customer_uid: int, keep_dir: str | None, move_into: int | None) -> list[str]:
    """Clean a directory root just took over from a customer (``fd``; no longer writable by it).

    The customer may have planted anything for root to open later: symlinks,
    FIFOs, hard links, its own files under names root opens. Kept: regular files
    with one link that the customer does not own (root's or nginx's logs), and
    the subdirectory ``keep_dir``. The customer's own regular files (its old
    logs) move into ``move_into`` (a directory descriptor); everything else is
    removed, subdirectories with a symlink-safe rmtree. Returns what was done.
    """
    done = []
    for entry in list(os.scandir(fd)):
        name = entry.name
        st = entry.stat(follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            if name == keep_dir:
                continue
            rmtree_at(fd, name)
            done.append(f"removed directory {name}")
        elif stat.S_ISREG(st.st_mode) and st.st_nlink == 1 and st.st_uid != customer_uid:
            continue
        elif stat.S_ISREG(st.st_mode) and st.st_nlink == 1 and move_into is not None:
            try:  # rename(2) replaces a symlink at the destination, never follows it
                os.rename(name, name, src_dir_fd=fd, dst_dir_fd=move_into)
                done.append(f"moved {name} into the customer's own directory")
            except OSError:  # e.g. the customer made a directory of that name there
                os.unlink(name, dir_fd=fd)
                done.append(f"removed {name}")
        else:
            os.unlink(name, dir_fd=fd)
            done.append(f"removed {name}")
    return done


def rmtree_at(parent: int, name: str) -> None:
    """Remove the tree ``name`` in ``parent`` without following any symlink in it."""
    import shutil

    if not shutil.rmtree.avoids_symlink_attacks:  # the fd-based implementation (Linux)
        raise EngineError("this platform's shutil.rmtree can follow symlinks; refusing to remove customer trees")
    st = os.stat(name, dir_fd=parent, follow_symlinks=False)
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(name, dir_fd=parent)
        return
    shutil.rmtree(name, dir_fd=parent)


def open_regular(root: str, relative: str) -> int:
    """Open ``root/relative`` read-only: every component below ``root`` without following symlinks,
    the file itself only if it is a regular file, and never blocking (O_NONBLOCK: a FIFO cannot stall us).

    ``root`` is trusted (the operator's ``log_dir``). Raises ``OSError`` (ELOOP for a symlink,
    ENOENT, ...) or ``NotRegular``.
    """
    parts = [p for p in relative.split("/") if p]
    if not parts or any(p in (".", "..") for p in parts):
        raise ValueError(f"not a relative path below {root}: {relative!r}")
    fd = open_dir(root)
    try:
        for part in parts[:-1]:
            nxt = open_dir_at(fd, part)
            os.close(fd)
            fd = nxt
        file_fd = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC, dir_fd=fd)
    finally:
        os.close(fd)
    st = os.fstat(file_fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(file_fd)
        raise NotRegular(f"{os.path.join(root, relative)} is not a regular file")
    os.set_blocking(file_fd, True)
    return file_fd


class NotRegular(OSError):
    pass


@dataclass(frozen=True)
class WantedDir:
    path: str
    mode: int
    uid: int = -1  # -1: leave as is
    gid: int = -1


def make_dirs(wanted: list[WantedDir]) -> list[str]:
    """Create or fix each directory (parents before children), safely; returns what was migrated.

    A directory's parent is either an earlier entry or a trusted directory (the
    operator's ``run_dir``/``log_dir``). When root takes over a directory that a
    customer owned (an older layout), what the customer left inside is cleaned
    (``take_back``): its files move into the entry's customer-owned child, if any.
    """
    notes: list[str] = []
    fds: dict[str, int] = {}
    try:
        for want in wanted:
            if want.path in fds or _as_wanted(want):  # made while taking its parent back, or right already
                continue
            parent_path, name = os.path.split(want.path.rstrip("/"))
            parent = fds.get(parent_path)
            if parent is None:
                parent = fds[parent_path] = open_dir(parent_path)
            before = owner_before(parent, name)
            ensured = ensure_dir(parent, name, want.mode, want.uid, want.gid, shown=want.path)
            fds[want.path] = ensured.fd
            if want.uid == 0 and before not in (None, 0):
                notes += _take_back(want, ensured.fd, before, [w for w in wanted if os.path.dirname(w.path) == want.path], fds)
    finally:
        for fd in fds.values():
            os.close(fd)
    return notes


def _as_wanted(want: WantedDir) -> bool:
    """Is ``want.path`` already a real directory with its owner and mode? (one lstat: the common case at scale).

    Only a read: whatever is off is fixed through descriptors. Its parents are trusted
    directories or earlier entries, which are root's or were fixed before it."""
    try:
        st = os.lstat(want.path)
    except OSError:
        return False
    return (stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == want.mode
            and want.uid in (-1, st.st_uid) and want.gid in (-1, st.st_gid))


def _take_back(want: WantedDir, fd: int, previous: int, children: list[WantedDir], fds: dict[str, int]) -> list[str]:
    child = children[0] if children else None
    move_into = None
    if child is not None:
        name = os.path.basename(child.path)
        try:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            if not stat.S_ISDIR(st.st_mode):
                os.unlink(name, dir_fd=fd)
        except FileNotFoundError:
            pass
        ensured = ensure_dir(fd, name, child.mode, child.uid, child.gid)
        fds[child.path] = move_into = ensured.fd
    done = take_back(fd, previous, os.path.basename(child.path) if child else None, move_into)
    return [f"{want.path}: taken over by root from uid {previous} (security model); " + "; ".join(done or ["nothing left inside"])]
