"""The status collectors against real processes, sockets and cgroup-like trees in tmp_path."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from hostctl import emperor
from hostctl.status_collect import CgroupMemory, memory_cgroup_of, sample_tree


def _fake_proc(tmp_path: Path, pid: int, lines: str) -> Path:
    proc = tmp_path / "proc"
    (proc / str(pid)).mkdir(parents=True)
    (proc / str(pid) / "cgroup").write_text(lines)
    return proc


def test_memory_cgroup_v1(tmp_path: Path) -> None:
    proc = _fake_proc(tmp_path, 42, "5:cpu,cpuacct:/hostctl/acme\n4:memory:/hostctl/acme\n0::/\n")
    mem = tmp_path / "v1" / "hostctl" / "acme"
    mem.mkdir(parents=True)
    (mem / "memory.usage_in_bytes").write_text("1048576\n")
    (mem / "memory.limit_in_bytes").write_text("268435456\n")
    got = memory_cgroup_of(42, str(proc), str(tmp_path / "v1"), str(tmp_path / "v2"))
    assert got == CgroupMemory(1 << 20, 256 << 20, str(mem))
    (mem / "memory.limit_in_bytes").write_text("9223372036854771712\n")  # v1's "no limit"
    assert memory_cgroup_of(42, str(proc), str(tmp_path / "v1"), str(tmp_path / "v2")).limit is None


def test_memory_cgroup_v2_and_none(tmp_path: Path) -> None:
    proc = _fake_proc(tmp_path, 7, "0::/hostctl/globex\n")
    v2 = tmp_path / "v2" / "hostctl" / "globex"
    v2.mkdir(parents=True)
    (v2 / "memory.current").write_text("4096\n")
    (v2 / "memory.max").write_text("max\n")
    assert memory_cgroup_of(7, str(proc), str(tmp_path / "v1"), str(tmp_path / "v2")) == CgroupMemory(4096, None, str(v2))
    (v2 / "memory.current").unlink()  # no memory controller there (as /sys/fs/cgroup/unified here)
    assert memory_cgroup_of(7, str(proc), str(tmp_path / "v1"), str(tmp_path / "v2")) is None
    with pytest.raises(OSError):
        memory_cgroup_of(8, str(proc))


def test_sample_tree_covers_children_and_survives_a_vanished_pid() -> None:
    parent = subprocess.Popen([sys.executable, "-c", "import subprocess,sys; subprocess.run(['sleep','30'])"],
                              start_new_session=True)
    try:
        import time

        deadline = time.monotonic() + 10
        sample = sample_tree(parent.pid)
        while len(sample.rss) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
            sample = sample_tree(parent.pid)
        assert parent.pid in sample.rss and len(sample.rss) == 2
        assert all(v > 0 for v in sample.rss.values()) and set(sample.cpu) == set(sample.rss)
    finally:
        os.killpg(parent.pid, 9)
        parent.wait()
    gone = sample_tree(parent.pid)
    assert gone.rss == {} and gone.denied == 0


def _serve_once(path: str, reply: bytes | None) -> threading.Thread:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)

    def run() -> None:
        conn, _ = server.accept()
        if reply is not None:
            conn.sendall(reply)
        else:
            conn.recv(1)  # hold the connection open and say nothing until the client gives up
        conn.close()
        server.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("reply, want", [
    (b'{"pid": 1, "workers": []}', ({"pid": 1, "workers": []}, None)),
    (b"", (None, "answered nothing")),
    (b"<html>", (None, "answered something that is not JSON")),
    (b"[1, 2]", (None, "answered something that is not a JSON object")),
    (None, (None, "did not answer within 0.2 s")),
])
def test_fetch_stats_says_why(tmp_path: Path, reply: bytes | None, want: tuple) -> None:
    path = str(tmp_path / "s.stats")
    thread = _serve_once(path, reply)
    assert emperor.fetch_stats(path, timeout=0.2) == want
    thread.join(5)


def test_fetch_stats_missing_socket(tmp_path: Path) -> None:
    assert emperor.fetch_stats(str(tmp_path / "none.stats")) == (None, "no such file or directory")
