"""Bounded reads of what a customer controls (issue 11, item 6): files, stats sockets, the probe.

Each hostile source is served for real (a FIFO, /dev/zero, a socket that trickles or
floods, deeply nested JSON, an HTTP server that never finishes); the reader must
return with a reason instead of blocking or eating memory. The worker threads are
joined with a generous bound only so that a regression fails instead of hanging CI.
"""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path
from typing import Callable

import pytest

from hostctl.engine import boundedio
from hostctl.engine import certs, checks, probe, status_probe

KIB = 1024


def _finishes(func: Callable[[], object], within: float = 60.0) -> object:
    """``func()``'s result, or a test failure if it has not returned after ``within`` seconds (it hangs)."""
    result: list[object] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            result.append(func())
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(within)
    assert not thread.is_alive(), f"{func} did not return within {within} s: it blocks"
    if errors:
        raise errors[0]
    return result[0]


def test_a_regular_file_is_read(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x" * 100)
    assert boundedio.read_regular(str(tmp_path / "f"), 100) == b"x" * 100


@pytest.mark.parametrize("nofollow", [True, False])
def test_a_fifo_is_refused_without_blocking(tmp_path: Path, nofollow: bool) -> None:
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(boundedio.Refused, match="is a FIFO, not a regular file"):
        _finishes(lambda: boundedio.read_regular(str(tmp_path / "fifo"), KIB, nofollow=nofollow))


def test_dev_zero_is_refused_through_a_symlink_or_not(tmp_path: Path) -> None:
    os.symlink("/dev/zero", tmp_path / "zero")
    with pytest.raises(boundedio.Refused, match="is a symbolic link"):
        boundedio.read_regular(str(tmp_path / "zero"), KIB, nofollow=True)
    with pytest.raises(boundedio.Refused, match="is a character device, not a regular file"):
        boundedio.read_regular(str(tmp_path / "zero"), KIB)


def test_a_large_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "big").write_bytes(b"x" * (KIB + 1))
    with pytest.raises(boundedio.Refused, match=r"is larger than 1024 bytes \(1025\)"):
        boundedio.read_regular(str(tmp_path / "big"), KIB)


@pytest.mark.parametrize("plant", ["fifo", "zero", "big"])
def test_a_hostile_pyvenv_cfg_is_named_not_read(tmp_path: Path, plant: str) -> None:
    venv = tmp_path / "venv"
    venv.mkdir()
    cfg = venv / "pyvenv.cfg"
    {"fifo": lambda: os.mkfifo(cfg), "zero": lambda: os.symlink("/dev/zero", cfg),
     "big": lambda: cfg.write_bytes(b"home = /usr/bin\n" * 10_000)}[plant]()
    why = _finishes(lambda: checks.virtualenv_problem(str(venv), "/usr/bin/python3"))
    want = {"fifo": "is a FIFO, not a regular file", "zero": "is a symbolic link, not a regular file",
            "big": "is larger than 65536 bytes"}[plant]
    assert why.startswith(f"{str(cfg)!r} {want}") and why.endswith("; it is not read"), why


def test_a_certificate_that_is_a_fifo_or_dev_zero(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "cert.pem")
    facts = _finishes(lambda: certs.read(str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")))
    assert facts.error == f"{str(tmp_path / 'cert.pem')!r} cannot be read (is a FIFO, not a regular file)"
    os.symlink("/dev/zero", tmp_path / "zero.pem")
    facts = _finishes(lambda: certs.read(str(tmp_path / "zero.pem"), str(tmp_path / "key.pem")))
    assert facts.error == f"{str(tmp_path / 'zero.pem')!r} cannot be read (is a character device, not a regular file)"


# --- stats sockets --------------------------------------------------------------------------


def _hostile_server(path: str, behave: Callable[[socket.socket], None]) -> tuple[threading.Thread, threading.Event]:
    """A UNIX socket at ``path`` whose one connection gets ``behave(conn)``; stop it with the event."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    stop = threading.Event()

    def run() -> None:
        conn, _ = server.accept()
        try:
            behave(conn)
        except OSError:
            pass  # the reader gave up and closed
        finally:
            conn.close()
            server.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, stop


def _trickle(stop: threading.Event) -> Callable[[socket.socket], None]:
    def behave(conn: socket.socket) -> None:
        conn.sendall(b'{"pid": 1, "x": "')
        while not stop.wait(0.05):
            conn.sendall(b"a")  # a byte every 50 ms: every recv() succeeds, so a per-recv timeout never fires
    return behave


def test_stats_socket_that_trickles_forever_is_cut_at_the_deadline(tmp_path: Path) -> None:
    path = str(tmp_path / "web.stats")
    stop = threading.Event()
    thread, _ = _hostile_server(path, _trickle(stop))
    try:
        assert _finishes(lambda: status_probe.fetch(path, timeout=0.5)) == (None, "did not answer within 0.5 s")
    finally:
        stop.set()
        thread.join(10)


def test_stats_socket_that_floods_is_cut_at_the_byte_cap(tmp_path: Path) -> None:
    path = str(tmp_path / "web.stats")
    chunk = b"[" + b" " * (1 << 20)

    def flood(conn: socket.socket) -> None:
        for _ in range(100):  # 100 MB
            conn.sendall(chunk)

    thread, _ = _hostile_server(path, flood)
    got = _finishes(lambda: status_probe.fetch(path, timeout=30))
    assert got == (None, f"sent more than {4 << 20} bytes (a stats server sends one small JSON object)")
    thread.join(10)


@pytest.mark.parametrize("depth", [33, 100_000])
def test_deeply_nested_json_is_refused(tmp_path: Path, depth: int) -> None:
    path = str(tmp_path / "web.stats")
    thread, _ = _hostile_server(path, lambda conn: conn.sendall(b'{"a":' + b"[" * depth + b"]" * depth + b"}"))
    assert _finishes(lambda: status_probe.fetch(path, timeout=5)) == (None, "answered JSON nested deeper than 32 levels")
    thread.join(10)


def test_json_depth_skips_strings() -> None:
    assert status_probe.json_depth(b'{"a": "[[[[{{{{", "b": [1, {"c": "\\"]]"}]}') == 3


def test_stats_socket_that_never_answers(tmp_path: Path) -> None:
    path = str(tmp_path / "web.stats")
    stop = threading.Event()
    thread, _ = _hostile_server(path, lambda conn: stop.wait(30))
    try:
        assert _finishes(lambda: status_probe.fetch(path, timeout=0.3)) == (None, "did not answer within 0.3 s")
    finally:
        stop.set()
        thread.join(10)


# --- the post-apply probe -------------------------------------------------------------------


def _http_server(behave: Callable[[socket.socket], None]) -> tuple[int, threading.Event, threading.Thread]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    stop = threading.Event()

    def run() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except socket.timeout:
                continue
            threading.Thread(target=lambda c=conn: _handle(c, behave), daemon=True).start()
        server.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return server.getsockname()[1], stop, thread


def _handle(conn: socket.socket, behave: Callable[[socket.socket], None]) -> None:
    try:
        conn.recv(4096)
        behave(conn)
    except OSError:
        pass
    finally:
        conn.close()


@pytest.mark.parametrize("behaviour, want", [
    ("endless body", "HTTP 200"),  # only the status line is read: the endless body does not matter
    ("trickled status line", "TimeoutError: no status line within"),
    ("silence", "TimeoutError: no status line within"),
    ("garbage", "BadStatusLine"),
])
def test_the_probe_is_bounded_in_time_and_bytes(behaviour: str, want: str) -> None:
    stop_body = threading.Event()

    def behave(conn: socket.socket) -> None:
        if behaviour == "endless body":
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n")
            while not stop_body.is_set():
                conn.sendall(b"z" * 65536)
        elif behaviour == "trickled status line":
            for byte in b"HTTP/1.1 200 OK":
                if stop_body.wait(0.05):
                    return
                conn.sendall(bytes([byte]) * 1)
            stop_body.wait(30)
        elif behaviour == "silence":
            stop_body.wait(30)
        else:
            conn.sendall(b"\x00" * (64 << 10))

    port, stop, thread = _http_server(behave)
    target = probe.Target("evil", "web", "evil.test", "/", 200, 0.5)
    try:
        outcome = _finishes(lambda: probe.check(("127.0.0.1", port), target))
    finally:
        stop_body.set()
        stop.set()
        thread.join(10)
    assert want in outcome.got, outcome
    assert outcome.ok is (want == "HTTP 200")
