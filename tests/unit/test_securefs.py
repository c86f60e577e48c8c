"""securefs: root's file operations in customer-reachable places never follow a symlink or block on a FIFO.

The "customer" here is uid 65534 (nobody): files are planted as root and then
handed to it with lchown, which is what the customer could have made itself.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from hostctl.engine.core import securefs
from hostctl.engine.core.errors import EngineError

CUSTOMER = 65534

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.fixture
def canary(tmp_path: Path) -> Path:
    secret = tmp_path / "secret"
    secret.mkdir(mode=0o700)
    path = secret / "canary"
    path.write_text("canary\n")
    os.chmod(path, 0o600)
    return path


def test_open_regular_refuses_symlinks_fifos_and_symlinked_directories(tmp_path: Path, canary: Path) -> None:
    (tmp_path / "log" / "c" / "uwsgi").mkdir(parents=True)
    (tmp_path / "log" / "c" / "uwsgi" / "ok.log").write_text("fine\n")
    with os.fdopen(securefs.open_regular(str(tmp_path / "log"), "c/uwsgi/ok.log"), "rb") as fh:
        assert fh.read() == b"fine\n"
    os.symlink(canary, tmp_path / "log" / "c" / "uwsgi" / "link.log")
    with pytest.raises(OSError) as link:
        securefs.open_regular(str(tmp_path / "log"), "c/uwsgi/link.log")
    assert link.value.errno == errno.ELOOP
    os.mkfifo(tmp_path / "log" / "c" / "uwsgi" / "fifo.log")
    with pytest.raises(securefs.NotRegular):  # returns at once: O_NONBLOCK, then fstat says FIFO
        securefs.open_regular(str(tmp_path / "log"), "c/uwsgi/fifo.log")
    os.symlink(canary.parent, tmp_path / "log" / "c" / "elsewhere")
    with pytest.raises(OSError) as through:
        securefs.open_regular(str(tmp_path / "log"), "c/elsewhere/canary")
    assert through.value.errno in (errno.ELOOP, errno.ENOTDIR)
    with pytest.raises(ValueError):
        securefs.open_regular(str(tmp_path / "log"), "c/../../secret/canary")


def test_ensure_dir_refuses_a_symlink_in_place_of_a_directory(tmp_path: Path, canary: Path) -> None:
    os.symlink(canary.parent, tmp_path / "d")
    fd = securefs.open_dir(str(tmp_path))
    try:
        with pytest.raises(EngineError, match="not a directory hostctl can use"):
            securefs.ensure_dir(fd, "d", 0o750)
    finally:
        os.close(fd)
    assert _mode(canary.parent) == 0o700


@needs_root
def test_a_link_planted_in_a_sticky_directory_where_root_wants_its_own_is_removed(tmp_path: Path, canary: Path) -> None:
    """A customer's /tmp (root's, 1777): the customer plants a link where root makes a mount point."""
    sticky = tmp_path / "tmp"
    sticky.mkdir()
    os.chmod(sticky, 0o1777)
    os.symlink(canary.parent, sticky / "mnt")
    os.lchown(sticky / "mnt", CUSTOMER, CUSTOMER)
    securefs.make_dirs([securefs.WantedDir(str(sticky / "mnt"), 0o755, 0, 0)])
    st = os.lstat(sticky / "mnt")
    assert stat.S_ISDIR(st.st_mode) and st.st_uid == 0 and _mode(sticky / "mnt") == 0o755
    assert _mode(canary.parent) == 0o700 and os.stat(canary.parent).st_uid == 0


@needs_root
def test_make_dirs_sets_owners_and_modes(tmp_path: Path) -> None:
    wanted = [securefs.WantedDir(str(tmp_path / "c"), 0o750, 0, CUSTOMER),
              securefs.WantedDir(str(tmp_path / "c" / "uwsgi"), 0o750, CUSTOMER, CUSTOMER)]
    assert securefs.make_dirs(wanted) == []
    for want in wanted:
        st = os.lstat(want.path)
        assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (want.uid, want.gid, want.mode)
    assert securefs.make_dirs(wanted) == []  # again: nothing to do


@needs_root
def test_make_dirs_takes_a_customer_owned_directory_back_and_removes_what_it_planted(tmp_path: Path, canary: Path) -> None:
    old = tmp_path / "log" / "c"  # the old layout: the customer owned its log directory
    old.mkdir(parents=True)
    (old / "web.log").write_text("the app's old log\n")  # the customer's own file
    (old / "web.error.log").write_text("nginx wrote this\n")  # root's (nginx's) file
    os.symlink(canary, old / "web.access.log")  # for nginx's master to open
    os.mkfifo(old / "web.fifo")
    os.link(canary, old / "hard.log")  # a hard link to a root file (if protected_hardlinks allowed it)
    (old / "sub").mkdir()
    os.symlink(canary, old / "sub" / "deep")
    os.symlink(canary.parent, old / "uwsgi")  # where the customer's own directory will be
    for path in (old / "web.log", old / "web.access.log", old / "web.fifo", old / "sub", old / "sub" / "deep", old / "uwsgi", old):
        os.lchown(path, CUSTOMER, CUSTOMER)
    os.chmod(old, 0o777)
    before = (canary.read_bytes(), os.stat(canary))

    notes = securefs.make_dirs([securefs.WantedDir(str(old), 0o750, 0, CUSTOMER),
                                securefs.WantedDir(str(old / "uwsgi"), 0o750, CUSTOMER, CUSTOMER)])

    assert len(notes) == 1 and "taken over by root from uid 65534" in notes[0], notes
    st = os.lstat(old)
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (0, CUSTOMER, 0o750)
    assert sorted(p.name for p in old.iterdir()) == ["uwsgi", "web.error.log"]
    assert (old / "web.error.log").read_text() == "nginx wrote this\n"
    uwsgi = os.lstat(old / "uwsgi")
    assert stat.S_ISDIR(uwsgi.st_mode) and uwsgi.st_uid == CUSTOMER
    assert (old / "uwsgi" / "web.log").read_text() == "the app's old log\n"
    after = os.stat(canary)
    assert canary.read_bytes() == before[0]
    assert (after.st_uid, after.st_gid, after.st_mode, after.st_nlink) == (before[1].st_uid, before[1].st_gid, before[1].st_mode, 1)
    assert _mode(canary.parent) == 0o700


@needs_root
def test_rmtree_at_removes_a_customer_tree_without_following_its_symlinks(tmp_path: Path, canary: Path) -> None:
    tree = tmp_path / "c"
    (tree / "a" / "b").mkdir(parents=True)
    os.symlink(canary.parent, tree / "a" / "out")
    os.symlink(canary, tree / "a" / "b" / "file")
    parent = securefs.open_dir(str(tmp_path))
    try:
        securefs.rmtree_at(parent, "c")
    finally:
        os.close(parent)
    assert not tree.exists()
    assert canary.read_text() == "canary\n"
