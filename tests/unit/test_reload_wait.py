"""reload_wait.listens and wait_listening on real UNIX sockets in a temp dir (no /proc/net scan)."""

from __future__ import annotations

import builtins
import os
import socket
from pathlib import Path

import pytest

from hostctl.engine.core import reload_wait


def _bound(path: Path, listen: bool) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    if listen:
        sock.listen(1)
    return sock


def test_listens_only_for_a_listening_socket_itself(tmp_path: Path) -> None:
    live, bound = _bound(tmp_path / "live.sock", True), _bound(tmp_path / "bound.sock", False)
    stale = _bound(tmp_path / "stale.sock", True)
    stale.close()  # its file stays, nobody listens (a vassal that was killed)
    (tmp_path / "link.sock").symlink_to(tmp_path / "live.sock")  # a customer's link to a listening socket
    (tmp_path / "file.sock").write_text("")
    try:
        assert reload_wait.listens(str(tmp_path / "live.sock"))
        for name in ("bound.sock", "stale.sock", "link.sock", "file.sock", "missing.sock"):
            assert not reload_wait.listens(str(tmp_path / name)), name
    finally:
        live.close()
        bound.close()


def test_a_full_backlog_still_listens(tmp_path: Path) -> None:
    server = _bound(tmp_path / "busy.sock", False)
    server.listen(0)
    clients = []
    try:
        for _ in range(8):  # fill the backlog: a non-blocking connect then fails with EAGAIN
            c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
            try:
                c.connect(str(tmp_path / "busy.sock"))
            except BlockingIOError:
                pass
            clients.append(c)
        assert reload_wait.listens(str(tmp_path / "busy.sock"))
    finally:
        for c in clients:
            c.close()
        server.close()


def test_waiting_for_new_sockets_never_reads_the_hosts_socket_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """/proc/net/unix grows with every customer's sockets (100,000 of one customer's made each read take 1.6 s):
    the wait must cost the same however many sockets others hold."""
    real_open = builtins.open

    def guarded(file, *args, **kwargs):
        if str(file).startswith("/proc/net/"):
            raise AssertionError(f"wait_listening read {file}")
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded)
    live = _bound(tmp_path / "a.sock", True)
    try:
        assert reload_wait.wait_listening({str(tmp_path / "a.sock"): "acme_web.ini"}, lambda: set(), timeout=5) == []
        late = reload_wait.wait_listening({str(tmp_path / "none.sock"): "acme_api.ini"}, lambda: set(), timeout=0.1)
        assert late == ["acme_api.ini"]
        assert reload_wait.wait_listening({str(tmp_path / "none.sock"): "acme_api.ini"},
                                          lambda: {"acme_api.ini"}, timeout=5) == ["acme_api.ini"]
    finally:
        live.close()
        os.unlink(tmp_path / "a.sock")


def _holder(*socks: socket.socket) -> "subprocess.Popen[bytes]":
    import subprocess
    import sys

    fds = [s.fileno() for s in socks]
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], pass_fds=fds)


def test_an_old_workers_listeners_are_asked_of_its_own_sockets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A process holding a listening socket (as an old nginx worker does until it closes its listeners) is
    found by asking its sockets, without the namespace's tables; one holding only connected sockets is not."""
    real_open = builtins.open

    def guarded(file, *args, **kwargs):
        if str(file).startswith("/proc/net/"):
            raise AssertionError(f"read {file}")
        return real_open(file, *args, **kwargs)

    listener = _bound(tmp_path / "l.sock", True)
    left, right = socket.socketpair()
    holding, quiet = _holder(listener, left), _holder(right)
    try:
        monkeypatch.setattr(builtins, "open", guarded)
        if reload_wait.held_listeners(holding.pid) is None:
            pytest.skip("pidfd_getfd is not allowed here (not root, or a kernel before 5.6)")
        assert reload_wait.held_listeners(holding.pid) is True
        assert reload_wait.held_listeners(quiet.pid) is False
        assert reload_wait.still_accepting({holding.pid, quiet.pid}, lambda: set()) == {holding.pid}
    finally:
        for proc in (holding, quiet):
            proc.kill()
            proc.wait()
        for s in (listener, left, right):
            s.close()
    assert reload_wait.held_listeners(holding.pid) is False  # gone
