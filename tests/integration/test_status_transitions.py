"""`hostctl status` through every transition a vassal goes through, against a real Emperor.

What the Emperor reports was read first on this host (Debian's uWSGI 2.0.21): after
a graceful reload it sets ``accepting`` again but never ``ready``, and counts the
reload in ``respawns``; a master that dies is restarted without any count. Each
step below makes one transition happen for real and checks the state, the
reload, respawn and OOM counters that `status --json` shows.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.harness import APPS, Sandbox, Server, run_cli, wait_for
from tests.integration.test_status_logs import CGROUPS, _remove_cgroups

pytestmark = pytest.mark.integration

# The app takes 2 s to import, so a reload lasts long enough to be seen.
SLOW_APP = """import json, os, time
time.sleep(2)

def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps({"pid": os.getpid(), "greeting": os.environ.get("GREETING")}).encode()]
"""


@pytest.fixture
def box() -> Iterator[Sandbox]:
    parent = f"hcsx{uuid.uuid4().hex[:8]}"
    box = Sandbox({"cgroup": {"mode": "v1", "parent": parent}} if CGROUPS else None)
    yield box
    box.cleanup()
    _remove_cgroups(parent)


def _row(box: Sandbox, customer: str) -> dict[str, Any]:
    result = run_cli(box.inventory, "status", "--json", "--cpu-interval", "0", customer)
    return json.loads(result.stdout)["apps"][0]


def _wait_state(box: Sandbox, customer: str, state: str, also=lambda row: True, timeout: float = 60) -> dict[str, Any]:
    seen: list[dict[str, Any]] = []

    def attempt() -> dict[str, Any] | None:
        seen[:] = [_row(box, customer)]
        return seen[0] if seen[0]["state"] == state and also(seen[0]) else None

    try:
        return wait_for(attempt, timeout=timeout, interval=0.05, what=f"{customer} to be {state}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last row: {seen}") from None


def _app(box: Sandbox, greeting: str) -> dict:
    return {"apps": {"web": {"domains": ["slow.example"], "wsgi": str(box.apps / "slow.py"), "env": {"GREETING": greeting}}}}


def test_reloads_crashes_and_sleep_show_as_they_happen(box: Sandbox, make_server) -> None:
    (box.apps / "slow.py").write_text(SLOW_APP)
    box.write_customer("slow", _app(box, "g0"))
    box.write_customer("od", {"apps": {"web": box.echo_app(["od.example"], on_demand=True, idle=3)}})
    server = make_server(box)
    box.hostctl("apply")

    # First start: starting until the app has imported, then running.
    row = _wait_state(box, "slow", "running")
    assert (row["reloads"], row["respawns"], row["healthy"]) == (0, 0, True), row
    master = row["pid"]
    assert server.wait_json("slow.example")["greeting"] == "g0"

    # A graceful reload ordered by the Emperor (an env change): reloading while it lasts, then
    # running again (before: "starting, master not ready yet" for good), counted as a reload.
    box.write_customer("slow", _app(box, "g1"))
    box.hostctl("apply")
    seen = _wait_state(box, "slow", "reloading", timeout=30)
    assert seen["healthy"] is True and "graceful reload" in seen["detail"], seen
    row = _wait_state(box, "slow", "running")
    assert (row["reloads"], row["respawns"], row["pid"]) == (1, 0, master), row
    assert server.wait_json("slow.example")["greeting"] == "g1"

    # touch: the Emperor reloads it again (mtime); status's stats read makes it rescan at once.
    vassal = box.path("vassals") / "slow_web.ini"
    now = time.time()
    assert int(now) > int(vassal.stat().st_mtime)  # the reload above took seconds: the Emperor sees a newer mtime
    os.utime(vassal, (now, now))
    _wait_state(box, "slow", "reloading", timeout=30)
    row = _wait_state(box, "slow", "running", lambda r: r["reloads"] == 2)
    assert (row["respawns"], row["pid"]) == (0, master), row

    # A reload inside the vassal (SIGHUP to its master, as a customer's own process may send):
    # reloading while the master re-executes itself, running afterwards; not an Emperor reload.
    os.kill(master, signal.SIGHUP)
    seen = _wait_state(box, "slow", "reloading", timeout=30)
    row = _wait_state(box, "slow", "running")
    assert (row["reloads"], row["respawns"], row["pid"]) == (2, 0, master), (seen, row)

    # The master dies (SIGKILL): the Emperor starts it again under a new entry (its reload count
    # starts over); one respawn, a new pid, not a reload.
    os.kill(master, signal.SIGKILL)
    row = _wait_state(box, "slow", "running", lambda r: r["pid"] != master and r["respawns"] == 1)
    assert row["reloads"] == 0 and "its master died and the Emperor started it again" in row["detail"], row
    assert server.wait_json("slow.example")["greeting"] == "g1"

    # On demand: asleep (idle) until a request wakes it, running, then asleep again after idle: 3.
    row = _wait_state(box, "od", "idle")
    assert row["pid"] is None and row["healthy"], row
    server.wait_json("od.example")
    _wait_state(box, "od", "running")
    _wait_state(box, "od", "idle", timeout=60)


def test_oom_kills_are_counted_from_the_customers_cgroup(box: Sandbox, make_server) -> None:
    if not CGROUPS:
        pytest.skip("needs root and a writable cgroup v1 memory controller at /sys/fs/cgroup/memory")
    shutil.copy(APPS / "probe.py", box.apps / "probe.py")
    box.write_customer("hog", {"limits": {"memory": "64M"},
                               "apps": {"web": {"domains": ["hog.example"], "wsgi": str(box.apps / "probe.py")}}})
    server = make_server(box)
    box.hostctl("apply")
    row = _wait_state(box, "hog", "running")
    assert row["oom_kills"] == 0 and row["memory_limit_bytes"] == 64 << 20, row
    assert server.request("hog.example", "/alloc?mb=512", timeout=60)[0] == 502  # the worker is OOM-killed
    control = Path(f"/sys/fs/cgroup/memory/{_parent(box)}/hog/memory.oom_control")
    oom = dict(line.split() for line in control.read_text().splitlines())
    row = _wait_state(box, "hog", "running", lambda r: r["oom_kills"] >= 1)
    assert row["oom_kills"] == int(oom["oom_kill"]) and row["respawns"] == 0, row
    table = run_cli(box.inventory, "status", "--cpu-interval", "0", "hog").stdout
    header, line = table.splitlines()[:2]
    assert header.split()[-3:] == ["OOM", "UPTIME", "DOMAINS"] and line.split()[-3] == str(row["oom_kills"]), table


def _parent(box: Sandbox) -> str:
    import yaml

    return yaml.safe_load((box.inventory / "hostctl.yaml").read_text())["cgroup"]["parent"]


CHAIN_APP = """import os

def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [("%s %d" % (open("version").read().strip(), os.getpid())).encode()]
"""


def test_a_chain_reload_keeps_serving_and_is_not_counted_as_a_reload(box: Sandbox, make_server) -> None:
    """A released app (``root:``, lazy-apps) chain-reloads on its reload trigger: one worker at a time,
    so with two processes one always accepts. Status stays healthy and counts neither a reload nor a respawn."""
    import subprocess

    root = box.path("srv") / "chain"
    release = root / "releases" / "r1"
    release.mkdir(parents=True)
    (release / "app.py").write_text(CHAIN_APP)
    (release / "version").write_text("r1\n")
    subprocess.run(["/usr/bin/python3", "-m", "venv", "--without-pip", str(release / ".venv")], check=True)
    (root / "current").symlink_to("releases/r1")
    box.write_customer("chain", {"apps": {"web": {"domains": ["chain.example"], "wsgi": "app:application",
                                                  "root": str(root), "processes": 2}}})
    server = make_server(box)
    box.hostctl("apply")
    row = _wait_state(box, "chain", "running", lambda r: r["workers"] == 2)
    pids = {w for w in _worker_pids(server, "chain.example")}
    (release / "version").write_text("r2\n")
    (root / "reload.touch").touch()
    states = set()

    def chained() -> bool:
        states.add((now := _row(box, "chain"))["state"])
        status, body = server.request("chain.example")
        return now["state"] == "running" and status == 200 and body.startswith(b"r2") and \
            not (pids & set(_worker_pids(server, "chain.example")))

    wait_for(chained, timeout=60, interval=0.1, what="every worker to be replaced by the chain reload")
    after = _row(box, "chain")
    assert states <= {"running", "reloading"}, states
    assert (after["reloads"], after["respawns"], after["pid"]) == (row["reloads"], 0, row["pid"]), (row, after)


def _worker_pids(server: Server, host: str) -> list[int]:
    found = set()
    for _ in range(6):
        status, body = server.request(host)
        if status == 200:
            found.add(int(body.split()[1]))
    return sorted(found)
