"""Hostile tenants, item 8 (issue 11): what customers share is shared out.

One real Emperor and nginx, two customers with their own Unix users in cgroup v1
leaves under a parent with a memory budget for both together: "evil" holds
1,100 requests open on its own domain while "good" must still answer (nginx's
per-domain connection limit); evil's vassal has its own open-files limit; each
vassal has a private /tmp; and the parent's budget stops evil although evil's own
limit would allow it. Users, cgroups and processes are removed at teardown.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import time
from pathlib import Path
from typing import Iterator

import pytest

from tests.harness import APPS, Sandbox, Server, require_cgroup_v1, tear_down

pytestmark = pytest.mark.integration

V1 = "/sys/fs/cgroup"
MEMORY = f"{V1}/memory"
CONTROLLERS = ("memory", "cpu", "pids")
HELD = 1100  # connections to evil's domain with a request each, held open (the figure of issue 11); serve has 1,024
# what this module asks of hostctl (item 8's settings; the old code knew none of them)
BUDGET = {"memory_budget": "160M"}
EVIL_LIMITS = {"connections": 50, "open_files": 256}


class Shared:
    def __init__(self) -> None:
        tag = secrets.token_hex(3)
        self.users = {"good": f"hcd{tag}", "evil": f"hcx{tag}"}
        self.parent = f"hostctl-test-{tag}"
        # not under /tmp: a private /tmp would hide the sandbox from the vassals (so it is only on by default elsewhere)
        self.box = Sandbox({"isolation": {"users": "per-customer"}, "cgroup": {"mode": "v1", "parent": self.parent, **BUDGET}},
                           base="/var/tmp")
        shutil.copy(APPS / "hostile.py", self.box.apps / "hostile.py")
        self.canary = Path(f"/tmp/hostctl-canary-{tag}")
        self.server: Server | None = None

    def write(self) -> None:
        for name in self.users:
            app = {"domains": [f"{name}.test"], "wsgi": str(self.box.apps / "hostile.py"), "env": {"CUSTOMER": name},
                   "processes": 1, "harakiri": 120}
            if name == "evil":
                app.update({"listen": 1024, **EVIL_LIMITS})
            self.box.write_customer(name, {"user": self.users[name], "limits": {"memory": "512M"}, "apps": {"web": app}})

    def get(self, customer: str, path: str = "/", timeout: float = 20) -> tuple[int, dict | bytes]:
        assert self.server is not None
        status, body = self.server.request(f"{customer}.test", path, timeout=timeout)
        return status, (__import__("json").loads(body) if status == 200 else body)

    def teardown(self) -> None:
        tear_down(self.box, self.server, self.users.values(),
                  cgroups=[f"{V1}/{c}/{self.parent}{sub}" for c in CONTROLLERS for sub in ("", "/good", "/evil")],
                  last=lambda: self.canary.unlink(missing_ok=True))


@pytest.fixture(scope="module")
def shared() -> Iterator[Shared]:
    require_cgroup_v1()
    s = Shared()
    try:
        s.write()
        s.box.hostctl("apply", "--create-users")
        s.server = Server(s.box)
        for name in s.users:
            s.server.wait_json(f"{name}.test")
        yield s
    finally:
        s.teardown()


def test_each_vassal_has_its_own_open_files_limit(shared: Shared) -> None:
    """Old code: every vassal inherited the Emperor's limit (here the test runner's, 20,000 or more)."""
    status, body = shared.get("evil", "/fds")
    assert status == 200, body
    fds = body["fds"]
    assert (fds["soft"], fds["hard"]) == (256, 256) and fds["errno"] == 24 and fds["opened"] < 256, fds
    status, body = shared.get("good", "/fds")
    assert (body["fds"]["soft"], body["fds"]["hard"]) == (4096, 4096), body


def test_each_vassal_has_a_private_tmp(shared: Shared) -> None:
    """Old code (before item 8): evil saw the host's /tmp (the canary root put there) and wrote into it, where good could see it."""
    shared.canary.write_text("host tmp\n")
    os.chmod(shared.canary, 0o644)
    name = f"evil-{secrets.token_hex(4)}"
    status, body = shared.get("evil", f"/tmp?write={name}")
    assert status == 200, body
    assert name in body["tmp"]["entries"] and shared.canary.name not in body["tmp"]["entries"], body
    assert not Path("/tmp", name).exists(), "evil's file reached the host's /tmp"
    status, body = shared.get("good", "/tmp")
    assert name not in body["tmp"]["entries"] and shared.canary.name not in body["tmp"]["entries"], body
    # the customer's own directory <state_dir>/tmp/good, bound over /tmp, without set-id or devices
    mounts = [line.split() for line in Path(f"/proc/{body['pid']}/mountinfo").read_text().splitlines()]
    tmp = [m for m in mounts if m[4] == "/tmp"]
    assert tmp and tmp[-1][3].endswith("/state/tmp/good") and {"nosuid", "nodev"} <= set(tmp[-1][5].split(",")), tmp


def test_the_parent_budget_bounds_all_customers_together(shared: Shared) -> None:
    """Old code: no budget existed; evil's 300 MB fit under its own 512M limit and the request answered 200."""
    assert Path(f"{MEMORY}/{shared.parent}/memory.limit_in_bytes").read_text().strip() == str(160 << 20)
    status, body = shared.get("evil", "/alloc?mb=300", timeout=60)
    assert status == 502, (status, body)  # its worker was OOM-killed: the budget, not its own limit
    leaf = f"{MEMORY}/{shared.parent}/evil"
    oom = dict(line.split() for line in Path(f"{leaf}/memory.oom_control").read_text().splitlines())
    assert int(oom["oom_kill"]) >= 1, oom  # the kernel killed evil's worker ...
    assert int(Path(f"{leaf}/memory.limit_in_bytes").read_text()) == 512 << 20  # ... under its own 512M limit,
    assert int(Path(f"{MEMORY}/{shared.parent}/memory.failcnt").read_text()) > 0  # because the parent's budget was hit
    assert shared.server.wait_json("good.test")["customer"] == "good"  # type: ignore[union-attr]


def test_requests_held_open_on_one_domain_do_not_starve_a_neighbour(shared: Shared) -> None:
    """Old code: with 1,100 requests held open on evil's domain, good.test's request was reset (nginx had no
    connection left: each held request takes two, the client's and the upstream one). With 600 held the old code
    still answered good.test (nginx closes idle keep-alive connections when it runs short), so the figure is the
    issue's. (Last in this module: evil's one worker stays busy with the held requests for a while.)"""
    held: list[socket.socket] = []
    try:
        for _ in range(HELD):
            sock = socket.create_connection(("127.0.0.1", shared.box.port), timeout=30)
            sock.sendall(b"GET /hang?s=60 HTTP/1.1\r\nHost: evil.test\r\n\r\n")
            held.append(sock)
        # the requests past evil's limit have their connections closed at once; give nginx the time to read them all
        closed = _count_closed(held, deadline=time.monotonic() + 30, want=HELD - EVIL_LIMITS["connections"])
        status, body = shared.get("good", timeout=15)
        assert status == 200 and body["customer"] == "good", (status, body)
        assert closed >= HELD - EVIL_LIMITS["connections"], f"only {closed} of {HELD} held connections were closed by nginx"
    finally:
        for sock in held:
            sock.close()


def _count_closed(socks: list[socket.socket], deadline: float, want: int) -> int:
    """How many of ``socks`` nginx closed (EOF or reset, no answer) before ``deadline``, polling without blocking."""
    closed: set[int] = set()
    while time.monotonic() < deadline and len(closed) < want:
        for i, sock in enumerate(socks):
            if i in closed:
                continue
            sock.setblocking(False)
            try:
                if sock.recv(64, socket.MSG_PEEK) == b"":
                    closed.add(i)
            except BlockingIOError:
                continue
            except OSError:  # reset
                closed.add(i)
        time.sleep(0.2)
    return len(closed)
