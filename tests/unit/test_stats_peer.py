"""status_probe: root connects only to a socket itself (no symlink) served by the owner of its directory."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from hostctl.engine import status_probe


def _serve_as(uid: int, path: Path, payload: bytes) -> int:
    """A child that drops to ``uid``, listens on ``path`` and answers ``payload`` once."""
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(ready_r)
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            with socket.socket(socket.AF_UNIX) as srv:
                srv.bind(str(path))
                srv.listen(1)
                os.write(ready_w, b"x")
                srv.settimeout(10)
                conn, _ = srv.accept()
                conn.sendall(payload)
                conn.close()
        finally:
            os._exit(0)
    os.close(ready_w)
    os.read(ready_r, 1)
    os.close(ready_r)
    return pid


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to serve as another uid")
def test_a_socket_served_by_someone_else_than_its_directorys_owner_is_not_read() -> None:
    import shutil
    import tempfile

    tmp_path = Path(tempfile.mkdtemp(prefix="hostctl-peer-"))  # pytest's tmp_path is not searchable by uid 65534
    os.chmod(tmp_path, 0o755)
    try:
        _check_peers(tmp_path)
    finally:
        shutil.rmtree(tmp_path)


def _check_peers(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)  # root's directory that another user can bind in
    pid = _serve_as(65534, shared / "web.stats", b'{"workers": []}')
    try:
        data, why = status_probe.read_socket(str(shared / "web.stats"), timeout=5)
        assert data is None and why == "is served by uid 65534, not by the owner of its directory (uid 0)"
    finally:
        os.waitpid(pid, 0)
    mine = tmp_path / "mine"
    mine.mkdir()
    os.chown(mine, 65534, 65534)
    pid = _serve_as(65534, mine / "web.stats", b'{"workers": []}')
    try:
        assert status_probe.read_socket(str(mine / "web.stats"), timeout=5) == (b'{"workers": []}', None)
    finally:
        os.waitpid(pid, 0)


def test_a_symlink_or_a_file_is_not_connected_to(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    os.symlink(tmp_path / "file", tmp_path / "link")
    assert status_probe.read_socket(str(tmp_path / "link")) == (None, "is a symlink (never followed)")
    assert status_probe.read_socket(str(tmp_path / "file")) == (None, "is not a socket")
    assert status_probe.read_socket(str(tmp_path / "missing"))[1] == "no such file or directory"
