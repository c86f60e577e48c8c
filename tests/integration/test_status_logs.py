"""`hostctl status` and `hostctl logs` against a real Emperor and nginx.

One server for the module: customer ``good`` (an app that keeps 1 MB per
request and logs each path), ``bad`` (raises on import, so it crash-loops)
and ``off`` (``enabled: false``: no vassal, nginx answers 503).
"""

from __future__ import annotations

import contextlib
import json
import os
import pty
import re
import select
import shutil
import signal
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from hostctl.status import logs, rows as status
from tests.harness import APPS, REPO, Sandbox, Server, free_port, http_status, run_cli, wait_for

pytestmark = pytest.mark.integration


V1_MEMORY = Path("/sys/fs/cgroup/memory")
CGROUPS = os.geteuid() == 0 and os.access(V1_MEMORY, os.W_OK)  # then `good` gets a real memory limit
GOOD_LIMIT = 256 << 20


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[Sandbox, Server]]:
    if not (shutil.which("uwsgi") and shutil.which("nginx", path="/usr/sbin:/usr/bin")):
        pytest.fail("uwsgi and nginx are required (make test installs them)")
    parent = f"hcst{uuid.uuid4().hex[:8]}"
    box = Sandbox({"cgroup": {"mode": "v1", "parent": parent}} if CGROUPS else None)
    server = None
    try:
        for app in ("grow.py", "crash.py", "spin.py"):
            shutil.copy(APPS / app, box.apps / app)
        box.write_customer("good", {"limits": {"memory": "256M"},
                                    "apps": {"web": {"domains": ["good.example"], "wsgi": str(box.apps / "grow.py")}}})
        box.write_customer("bad", {"apps": {"web": {"domains": ["bad.example"], "wsgi": str(box.apps / "crash.py")}}})
        box.write_customer("off", {"apps": {"web": box.echo_app(["off.example"], enabled=False)}})
        box.write_customer("busy", {"apps": {"web": {"domains": ["busy.example"], "wsgi": str(box.apps / "spin.py")}}})
        server = Server(box)
        box.hostctl("apply")
        server.wait_status("good.example", 200)
        yield box, server
    finally:
        try:
            if server is not None:
                server.stop()
        finally:
            box.cleanup()
            _remove_cgroups(parent)


def _remove_cgroups(parent: str) -> None:
    """The test's cgroups, leaves first (possible once their processes are gone)."""
    for controller in Path("/sys/fs/cgroup").iterdir():
        base = controller / parent
        for leaf in [*sorted(base.glob("*"), reverse=True), base] if base.is_dir() else []:
            if leaf.is_dir():
                with contextlib.suppress(OSError):
                    leaf.rmdir()


def _run(box: Sandbox, *args: str) -> subprocess.CompletedProcess:
    return run_cli(box.inventory, *args)


def _status(box: Sandbox, *args: str, check_code: int | None = None, cpu: bool = False) -> subprocess.CompletedProcess:
    result = _run(box, "status", *args, *([] if cpu else ["--cpu-interval", "0"]))
    if check_code is not None:
        assert result.returncode == check_code, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result


def _json(box: Sandbox, *args: str, cpu: bool = False) -> dict[str, Any]:
    return json.loads(_status(box, "--json", *args, cpu=cpu).stdout)


def _by_customer(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["customer"]: row for row in doc["apps"]}


def test_states_and_exit_status(served: tuple[Sandbox, Server]) -> None:
    box, server = served
    doc = wait_for(lambda: (d := _json(box)) and _by_customer(d)["bad"]["state"] == "crash-looping" and d,
                   timeout=20, what="the crash-looping app to be blacklisted")
    rows = _by_customer(doc)
    assert {name: row["state"] for name, row in rows.items()} == {
        "good": "running", "bad": "crash-looping", "off": "stopped", "busy": "running"}
    assert doc["healthy"] is False and doc["emperor_error"] is None
    assert rows["bad"]["respawns"] >= 1
    assert "blacklist" in rows["bad"]["detail"]
    assert rows["good"]["workers"] == 1 and rows["good"]["pid"] and rows["good"]["uptime_seconds"] >= 0
    assert rows["good"]["rss_bytes"] > 1 << 20 and rows["good"]["domains"] == ["good.example"]
    assert rows["off"]["pid"] is None and rows["off"]["requests"] is None

    table = _status(box, check_code=1)
    lines = {line.split()[0]: line.split() for line in table.stdout.splitlines()[1:5]}
    assert table.stdout.splitlines()[0].split()[:3] == ["CUSTOMER", "APP", "STATE"]
    assert [lines[c][2] for c in ("bad", "good", "off")] == ["crash-looping", "running", "stopped"]
    assert "bad/web: crash-looping: in the Emperor's blacklist" in table.stdout

    _status(box, "good", "off", check_code=0)  # a health check of the healthy ones passes
    _status(box, "bad", check_code=1)
    unknown = _status(box, "nope", check_code=1)
    assert "Error: no such customer: 'nope' (known: bad, busy, good, off)" in unknown.stderr
    assert server.request("off.example")[0] == 503


def test_requests_and_rss_grow_after_a_burst(served: tuple[Sandbox, Server]) -> None:
    box, server = served
    before = _by_customer(_json(box, "good"))["good"]
    for i in range(40):
        assert server.request("good.example", f"/burst/{i}")[0] == 200
    after = _by_customer(_json(box, "good", cpu=True))["good"]
    assert after["requests"] == before["requests"] + 40
    assert after["rss_bytes"] >= before["rss_bytes"] + (30 << 20), (before["rss_bytes"], after["rss_bytes"])
    assert after["avg_rt_ms"] is not None and after["cpu_percent"] is not None
    assert after["pid"] == before["pid"]


def test_a_busy_worker_shows_busy_and_leads_by_cpu(served: tuple[Sandbox, Server]) -> None:
    box, server = served
    flag = box.root / f"stop-{uuid.uuid4().hex}"
    answers: list[int] = []
    request = threading.Thread(target=lambda: answers.append(server.request("busy.example", f"/?{flag}", timeout=60)[0]))
    request.start()
    try:
        row = wait_for(lambda: (r := _by_customer(_json(box, "busy"))["busy"])["busy_workers"] == 1 and r,
                       timeout=15, what="the spinning request to occupy busy's worker")
        assert row["workers"] == 1
        by_cpu = _json(box, "--sort", "cpu", cpu=True)["apps"]  # measured while it still spins
        assert by_cpu[0]["customer"] == "busy" and by_cpu[0]["cpu_percent"] > 0, by_cpu[:2]
        assert "1 (1 busy)" in _status(box, "busy", check_code=0).stdout
    finally:
        flag.touch()
        request.join(60)
    assert answers == [200]


def test_memory_against_the_customer_cgroup_limit(served: tuple[Sandbox, Server]) -> None:
    """With limits on (cgroup v1 here), MEM/LIMIT is the customer's cgroup: usage against its limit."""
    if not CGROUPS:
        pytest.skip("needs root and a writable cgroup v1 memory controller at /sys/fs/cgroup/memory")
    box, _ = served
    rows = _by_customer(_json(box))
    assert rows["good"]["memory_limit_bytes"] == GOOD_LIMIT
    assert 0 < rows["good"]["memory_bytes"] < GOOD_LIMIT
    table = _status(box, "good", check_code=0).stdout
    assert re.search(r" \d+(\.\d)?M/256M \(\d+%\) ", table), table


def test_json_keys_are_the_documented_ones(served: tuple[Sandbox, Server]) -> None:
    box, _ = served
    doc = _json(box)
    assert list(doc) == ["version", "healthy", "emperor_error", "problems", "apps"]
    assert all(tuple(row) == status.JSON_KEYS for row in doc["apps"])
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Status and logs", 1)[1].split("\n## ", 1)[0]
    undocumented = [key for key in status.JSON_KEYS if f"`{key}`" not in section]
    assert not undocumented, f"keys missing from the README's Status and logs section: {undocumented}"


def test_status_as_another_user_says_what_it_could_not_read(served: tuple[Sandbox, Server]) -> None:
    """Not root: the sockets in run_dir are out of reach; status must report that, not crash."""
    box, _ = served
    result = subprocess.run([sys.executable, "-m", "hostctl", "-i", str(box.inventory), "status", "--json"],
                            capture_output=True, text=True, timeout=60, user=65534, group=65534,
                            env={**os.environ, "HOME": "/tmp"})
    assert "Traceback" not in result.stderr, result.stderr
    doc = json.loads(result.stdout)
    rows = _by_customer(doc)
    if doc["emperor_error"] is not None:  # the Emperor's socket is root's
        assert "permission denied" in doc["emperor_error"]
        assert rows["good"]["state"] == "unknown" and result.returncode == 1
    else:
        assert any("permission denied" in p for p in rows["good"]["problems"]), rows["good"]
    assert rows["off"]["state"] == "stopped"


def test_logs_show_what_the_apps_printed(served: tuple[Sandbox, Server]) -> None:
    box, server = served
    marker = f"/logs/{uuid.uuid4().hex}"
    assert server.request("good.example", marker)[0] == 200
    wait_for(lambda: marker in _run(box, "logs", "good", "-n", "5").stdout, timeout=10, what="the request in the uWSGI log")
    bad = _run(box, "logs", "bad", "--app", "web", "-n", "200").stdout
    assert "crash: importing, about to fail" in bad and "RuntimeError: crash: this app always fails on import" in bad
    nginx = wait_for(lambda: (out := _run(box, "logs", "good", "--nginx", "-n", "3").stdout) and f"GET {marker} " in out and out,
                     timeout=10, what="the request in nginx's access log")
    assert "==> good/web access:" in nginx and "==> good/web error:" in nginx
    assert len(_run(box, "logs", "good", "-n", "2").stdout.splitlines()) == 2
    missing = _run(box, "logs", "good", "--app", "api")
    assert missing.returncode == 1 and "customer 'good' has no app 'api' (its apps: web)" in missing.stderr


def test_logs_follow_prints_new_lines(served: tuple[Sandbox, Server]) -> None:
    box, server = served
    out = open(box.path("follow.out"), "w+")
    proc = subprocess.Popen([sys.executable, "-m", "hostctl", "-i", str(box.inventory), "logs", "good", "-f", "-n", "0"],
                            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        probes: list[str] = []

        def following() -> bool:  # `logs -f -n 0` shows only what comes after it started: probe until one shows
            probes.append(f"/probe/{uuid.uuid4().hex}")
            assert server.request("good.example", probes[-1])[0] == 200
            text = Path(out.name).read_text()
            return any(p in text for p in probes)

        wait_for(following, timeout=20, interval=0.2, what="logs -f to follow")
        markers = [f"/follow/{uuid.uuid4().hex}" for _ in range(3)]
        for marker in markers:
            assert server.request("good.example", marker)[0] == 200
        wait_for(lambda: all(m in Path(out.name).read_text() for m in markers), timeout=15, what="followed lines")
        assert proc.poll() is None, "logs -f exited"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        out.close()


def test_watch_refreshes_in_a_terminal_and_sorts(served: tuple[Sandbox, Server]) -> None:
    box, _ = served
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "hostctl", "-i", str(box.inventory), "status", "--watch", "--interval", "0.5"],
                            stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
                            env={**os.environ, "TERM": "xterm", "LINES": "30", "COLUMNS": "200"})
    os.close(slave)
    seen = b""

    def screen_has(pattern: str) -> bool:
        nonlocal seen
        while select.select([master], [], [], 0.1)[0]:
            try:
                seen += os.read(master, 65536)
            except OSError:
                break
        return re.search(pattern.encode(), seen) is not None

    try:
        wait_for(lambda: screen_has(r"name\]") and screen_has(r"crash-looping"), timeout=20, what="the watch screen")
        seen = b""  # curses redraws only what changed: look for the new sort in what comes next
        os.write(master, b"m")
        wait_for(lambda: screen_has(r"memory\]"), timeout=10, what="the sort to change")
        os.write(master, b"q")
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        os.close(master)


def test_quarantined_customer_shows_the_reason_and_keeps_serving(served: tuple[Sandbox, Server]) -> None:
    """Safe apply holds back a customer whose new server block nginx rejects; status says so (runs last)."""
    box, server = served
    template = (REPO / "templates" / "server.conf.j2").read_text()
    anchor = "    client_max_body_size"
    assert anchor in template
    broken = template.replace(anchor, "{% if customer.name == 'good' %}\n    bogus_directive on;\n{% endif %}\n" + anchor, 1)
    override = box.inventory / "templates" / "server.conf.j2"
    override.parent.mkdir(exist_ok=True)
    override.write_text(broken)
    try:
        assert box.hostctl("apply", check=False).returncode == 1
        row = _by_customer(_json(box, "good"))["good"]
        assert row["state"] == "quarantined" and row["healthy"] is True
        assert "bogus_directive" in row["detail"] and "underneath: running" in row["detail"]
        _status(box, "good", check_code=0)  # still serving its last-known-good files
        assert server.request("good.example")[0] == 200
    finally:
        override.unlink()
        box.hostctl("apply", check=False)
    assert _by_customer(_json(box, "good"))["good"]["state"] == "running"


def test_follow_survives_real_uwsgi_log_rotation(tmp_path: Path) -> None:
    """uWSGI's log-maxsize renames the full log to <log>.<timestamp> and opens a new one: no line is lost."""
    os.chmod(tmp_path, 0o755)
    shutil.copy(APPS / "grow.py", tmp_path / "grow.py")
    log = tmp_path / "web.log"
    port = free_port()
    proc = subprocess.Popen(["uwsgi", "--plugins", "python3", "--master", "--http-socket", f"127.0.0.1:{port}",
                             "--wsgi-file", str(tmp_path / "grow.py"), "--logto", str(log), "--log-maxsize", "2000",
                             "--log-reopen"], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: http_status(port, "/warmup") == 200, timeout=15, what="uWSGI to answer")
        follower = logs.Follower(str(log), open(log, "rb"), log.stat().st_size)
        seen = [b""]
        paths = [f"/rot/{i}" for i in range(40)]  # with uWSGI's request lines, ~10 KB against log-maxsize 2,000

        def follows(last: str) -> bool:
            seen[0] += follower.read()
            return f"grow: {last} ".encode() in seen[0]

        def rotated() -> list[str]:
            seen[0] += follower.read()
            return [p.name for p in tmp_path.iterdir() if p.name.startswith("web.log.")]

        for path in paths[:20]:
            assert http_status(port, path) == 200
        wait_for(rotated, timeout=15, what="uWSGI to rotate the log (its master checks the size about once a second)")
        for path in paths[20:]:
            assert http_status(port, path) == 200
        wait_for(lambda: follows(paths[-1]), timeout=15, what="the last line")
        followed = [line for line in seen[0].decode().splitlines() if line.startswith("grow: /rot/")]
        assert followed == [f"grow: {p} request {i + 2}" for i, p in enumerate(paths)]
        follower.close()
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

