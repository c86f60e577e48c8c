"""appagent.read_socket: a customer's stats socket that answers deeply nested JSON is 'no answer', not a crash."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

from hostctl.engine import appagent


def _serve_once(path: str, payload: bytes) -> threading.Thread:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)

    def run() -> None:
        with server:
            conn, _ = server.accept()
            with conn:
                conn.sendall(payload)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_deeply_nested_json_from_a_stats_socket_reads_as_no_answer(tmp_path: Path) -> None:
    path = str(tmp_path / "web.stats")
    thread = _serve_once(path, b"[" * 200_000)
    assert appagent.read_socket(path, timeout=5) is None
    thread.join(timeout=5)


def test_a_plain_stats_answer_still_reads(tmp_path: Path) -> None:
    path = str(tmp_path / "web.stats")
    thread = _serve_once(path, b'{"workers": [{"pid": 7, "accepting": 1}]}')
    assert appagent.workers(appagent.read_socket(path, timeout=5)) == {7: True}
    thread.join(timeout=5)
