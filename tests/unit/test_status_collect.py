"""The status collectors against real processes, sockets and cgroup-like trees in tmp_path."""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from hostctl.engine import status_probe
from hostctl.status import rows as status
from hostctl.status.collect import sample_tree


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
    assert status_probe.fetch(path, timeout=0.2) == want
    thread.join(5)


def test_fetch_stats_missing_socket(tmp_path: Path) -> None:
    assert status_probe.fetch(str(tmp_path / "none.stats")) == (None, "no such file or directory")


def test_unreadable_quarantine_record_is_a_note_not_a_crash(tmp_path: Path) -> None:
    from hostctl.inventory import loader as inventory
    from hostctl.status.collect import read_quarantine, unread, Observed

    (tmp_path / "customers").mkdir()
    (tmp_path / "hostctl.yaml").write_text("state_dir: state\n")
    inv = inventory.load(tmp_path)
    notes: list[str] = []
    assert read_quarantine(inv.settings, notes) == {} and notes == []  # no record: nobody quarantined
    (tmp_path / "state" / "quarantine.json").mkdir(parents=True)  # unreadable as a file
    assert read_quarantine(inv.settings, notes) == {}
    assert notes == [f"the quarantine record {tmp_path}/state/quarantine.json: is a directory"]
    observed = Observed(now=0, emperor=None, emperor_error="the Emperor's stats socket x: connection refused", notes=notes)
    assert unread(observed) == ["the Emperor's stats socket x: connection refused", notes[0]]


def test_the_probe_runs_standalone_and_its_answer_parses(tmp_path: Path) -> None:
    """status_probe as the server runs it (python3 -c SOURCE, request on stdin): a stats socket, this process tree."""
    from hostctl.status import remote as status_remote

    stats = str(tmp_path / "web.stats")
    thread = _serve_once(stats, json.dumps({"pid": os.getpid(), "workers": [{"pid": os.getpid(), "requests": 3}]}).encode())
    request = {"emperor_stats": str(tmp_path / "emperor.stats"), "apps": {"acme_web": stats},
               "customers": {"acme_web": "acme"}, "quarantine": str(tmp_path / "quarantine.json"),
               "cpu_interval": 0.1, "timeout": 0.5}
    (tmp_path / "quarantine.json").write_text(json.dumps({"customers": {"acme": {"file": "nginx/acme_web.conf", "reason": "nginx -t"}}}))
    argv = shlex.split(status_remote.command())
    assert argv[:2] == ["python3", "-c"]
    done = subprocess.run(["/usr/bin/python3", "-I", "-c", argv[2]], input=json.dumps(request), capture_output=True,
                          text=True, timeout=30, cwd="/", env={"PATH": "/usr/bin:/bin"})
    thread.join(5)
    assert done.returncode == 0, done.stderr
    observed = status_remote.parse("some motd\n" + done.stdout, "web1")
    assert observed.emperor is None and observed.emperor_error == "the Emperor's stats socket on web1: no such file or directory"
    assert observed.vassals["acme_web"]["workers"][0]["requests"] == 3
    assert observed.after["acme_web"].rss[os.getpid()] > 1 << 20  # this test process, read from /proc
    assert observed.before["acme_web"].at < observed.after["acme_web"].at
    assert observed.quarantined == {"acme": "nginx/acme_web.conf: nginx -t"}
    row = status.rows([_spec()], observed, "web1")[0]
    assert (row.host, row.state, row.requests, row.rss_bytes > 0) == ("web1", "quarantined", 3, True)


def _spec():
    from hostctl.inventory.spec import AppSpec
    from hostctl.inventory.schema import App

    return AppSpec("acme", "web", App(domains=["acme.example"], wsgi="a:b"))


@pytest.mark.parametrize("output", ["", "Traceback ...", "@@hostctl-status@@{not json", '@@hostctl-status@@{"now": 1}'])
def test_unusable_probe_answers_are_errors(output: str) -> None:
    from hostctl.status import remote as status_remote
    from hostctl.errors import HostctlError

    with pytest.raises(HostctlError, match="host 'web1': the status probe gave no usable answer"):
        status_remote.parse(output, "web1")


def test_local_status_does_not_load_ssh_libraries() -> None:
    code = ("import sys; import hostctl.cli.main, hostctl.status.snapshot, hostctl.status.watch, hostctl.status.logs; "
            "print(','.join(m for m in ('paramiko', 'fabric', 'invoke', 'cryptography') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == ""


def test_remote_request_uses_the_hosts_paths(tmp_path: Path) -> None:
    from hostctl.inventory import loader as inventory
    from hostctl.status import remote as status_remote

    (tmp_path / "customers").mkdir()
    (tmp_path / "hostctl.yaml").write_text(
        "default_host: web1\nhosts:\n  web1:\n    address: 10.0.0.5\n    emperor_dir: /etc/hostctl/vassals\n"
        "    nginx_dir: /etc/hostctl/nginx\n    run_dir: /run/hostctl\n    log_dir: /var/log/hostctl\n    state_dir: /var/lib/hostctl\n")
    (tmp_path / "customers" / "acme.yaml").write_text("apps:\n  web:\n    domains: [acme.example]\n    wsgi: a:b\n")
    inv = inventory.load(tmp_path)
    assert status_remote.request(inv, "web1", inv.apps(), 0.5) == {
        "emperor_stats": "/run/hostctl/emperor.stats", "apps": {"acme_web": "/run/hostctl/acme/web.stats"},
        "customers": {"acme_web": "acme"}, "quarantine": "/var/lib/hostctl/quarantine.json",
        "cpu_interval": 0.5, "timeout": 1.0,
    }
