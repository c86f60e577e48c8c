"""On-demand apps against a real Emperor and nginx: asleep until the first request, asleep again after `idle`.

Also the security boundary: the Emperor creates on-demand sockets world-writable,
so only the directory keeps other local users out; a throw-away user must not
be able to connect, while nginx's user can.
"""

from __future__ import annotations

import os
import pwd
import stat
import subprocess
import sys
import uuid

import psutil
import pytest

from hostctl.engine import emperor
from tests.harness import Sandbox, wait_for

pytestmark = pytest.mark.integration

CONNECT = "import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); print('connected')"


def _vassal_pids(box: Sandbox, vassal: str) -> list[int]:
    """uWSGI processes running ``vassal`` (its master and workers), not the Emperor."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "cwd", "status"]):
        cmd = proc.info["cmdline"] or []
        if proc.info["status"] != psutil.STATUS_ZOMBIE and vassal in cmd and (proc.info["cwd"] or "").startswith(str(box.root)):
            found.append(proc.info["pid"])
    return found


def _connect_as(user: str, path: str) -> subprocess.CompletedProcess:
    return subprocess.run(["runuser", "-u", user, "--", sys.executable, "-c", CONNECT, path],
                          capture_output=True, text=True, timeout=30)


@pytest.fixture
def intruder():
    """A throw-away local user (no home, no shell), removed afterwards."""
    if os.geteuid() != 0:
        pytest.skip("needs root to create a user")
    name = "hc-t" + uuid.uuid4().hex[:8]
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name], check=True)
    try:
        yield name
    finally:
        subprocess.run(["userdel", name], check=False)
        with pytest.raises(KeyError):
            pwd.getpwnam(name)


def test_on_demand_sleeps_wakes_sleeps_and_only_nginx_may_connect(sandbox: Sandbox, make_server, intruder: str) -> None:
    sandbox.write_customer("acme", {"apps": {"web": sandbox.echo_app(["acme.example"], on_demand=True, idle=2,
                                                                      env={"CUSTOMER": "acme"})}})
    sandbox.write_customer("globex", {"apps": {"web": sandbox.echo_app(["globex.example"], env={"CUSTOMER": "globex"})}})
    server = make_server(sandbox)
    sandbox.hostctl("apply")
    vassals = sandbox.path("vassals")
    socket_path = str(sandbox.path("run") / "ondemand" / "acme_web.sock")  # the Emperor's (root's) directory
    assert (vassals / "acme_web.ini.socket").read_text() == socket_path + "\n"
    assert not (vassals / "globex_web.ini.socket").exists()
    assert "socket =" not in (vassals / "acme_web.ini").read_text(), "the Emperor's socket must not be bound again by the vassal"

    # Asleep: the Emperor holds the socket, no process runs the app; the always-on neighbour runs.
    server.wait_json("globex.example")
    stats = emperor.read_stats(str(sandbox.path("run") / "emperor.stats"))
    assert {v["id"] for v in stats["vassals"]} == {"acme_web.ini", "globex_web.ini"}
    assert stat.S_ISSOCK(os.stat(socket_path).st_mode)
    assert _vassal_pids(sandbox, "acme_web.ini") == []

    # Woken by its first request through nginx.
    first = server.wait_json("acme.example")
    assert first["customer"] == "acme"
    assert _vassal_pids(sandbox, "acme_web.ini"), "the first request should have started the vassal"

    # Back to sleep after `idle` seconds without requests, and woken again by the next one.
    wait_for(lambda: _vassal_pids(sandbox, "acme_web.ini") == [], timeout=30, what="acme to go idle")
    wait_for(lambda: 'acme_web.ini -> back to "on demand" mode' in (sandbox.path("log") / "emperor.log").read_text(),
             timeout=30, what="the Emperor to hold acme's socket again")
    again = server.wait_json("acme.example")
    assert again["customer"] == "acme" and again["pid"] != first["pid"]

    # Only nginx's group may enter the socket's directory; any other user is refused.
    run_dir = os.stat(os.path.dirname(socket_path))
    assert stat.S_IMODE(run_dir.st_mode) == 0o750 and run_dir.st_gid == pwd.getpwnam("www-data").pw_gid and run_dir.st_uid == 0
    refused = _connect_as(intruder, socket_path)
    assert refused.returncode != 0 and "PermissionError" in refused.stderr, refused
    allowed = _connect_as("www-data", socket_path)
    assert allowed.returncode == 0 and "connected" in allowed.stdout, allowed
    server.wait_json("acme.example")

    # Switching the app to always-on retires the on-demand vassal and starts an ordinary one.
    sandbox.write_customer("acme", {"apps": {"web": sandbox.echo_app(["acme.example"], env={"CUSTOMER": "acme"})}})
    applied = sandbox.hostctl("apply")
    assert "restarted (on-demand mode changed)" in applied.stdout
    assert not (vassals / "acme_web.ini.socket").exists()
    server.wait_json("acme.example")
    stats = emperor.read_stats(str(sandbox.path("run") / "emperor.stats"))
    acme = next(v for v in stats["vassals"] if v["id"] == "acme_web.ini")
    assert not acme["on_demand"], acme
    assert _vassal_pids(sandbox, "acme_web.ini")
