"""Helpers of the fleet tests: boot guests, install hostctl on them, talk HTTP through their forwarded ports,
and build the control machine's multi-host inventory for them."""

from __future__ import annotations

import http.client
import json
import shlex
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from tests.fleet.image import GUEST_VENV, Image
from tests.fleet.vm import Guest
from tests.harness import APPS, REPO, Sandbox, wait_for

FIGURES: dict[str, str] = {}  # printed at the end of the session (conftest.pytest_terminal_summary)
HOSTCTL = f"{GUEST_VENV}/bin/hostctl"
APP_DIR = "/srv/fleet"  # the test apps, on every guest
INVENTORY = "/etc/hostctl/inventory"  # on a server that runs `hostctl apply` itself
# How an operator makes a customer's user on a server reached by deploy (hostctl's own message and uid range).
USERADD = "useradd --system --user-group --no-create-home --shell /usr/sbin/nologin -K SYS_UID_MIN=20000 -K SYS_UID_MAX=29999 -K SYS_GID_MIN=20000 -K SYS_GID_MAX=29999"
SERVER_PATHS = {"emperor_dir": "/etc/hostctl/vassals", "nginx_dir": "/etc/hostctl/nginx", "run_dir": "/run/hostctl",
                "log_dir": "/var/log/hostctl", "state_dir": "/var/lib/hostctl"}


def figure(name: str, value: str) -> None:
    FIGURES[name] = value if name not in FIGURES else f"{FIGURES[name]}; {value}"


def build_wheel(out: Path, source: Path = REPO) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(source)],
                   check=True, capture_output=True)
    [wheel] = out.glob("hostctl-*.whl")
    return wheel


@contextmanager
def booted(image: Image, names: list[str], kind: str = "served") -> Iterator[list[Guest]]:
    """Boot guests in parallel (one qemu each); every one is stopped and its overlay removed afterwards."""
    guests: list[Guest] = []
    try:
        for name in names:
            guests.append(Guest(image, name, kind))
        started = time.monotonic()
        for guest in guests:
            guest.power_on()
        for guest in guests:
            guest.wait_ssh()
        figure(f"boot to SSH ({len(guests)} guest(s) at once)", f"{time.monotonic() - started:.1f} s")
        for guest in guests:
            put_apps(guest)
        yield guests
    finally:
        for guest in guests:
            guest.stop()


def put_apps(guest: Guest) -> None:
    for app in ("probe.py", "echo.py"):
        guest.put(APPS / app, f"{APP_DIR}/{app}")
    guest.run(f"chmod 755 {APP_DIR}")


def install_hostctl(guest: Guest, wheel: Path) -> str:
    """Install (or upgrade/downgrade to) ``wheel`` in the guest's hostctl virtualenv; return its version."""
    remote = f"/tmp/{wheel.name}"
    guest.put(wheel, remote)
    guest.run(f"{GUEST_VENV}/bin/pip install -q --no-index --no-deps --force-reinstall {shlex.quote(remote)} && rm -f {shlex.quote(remote)} "
              f"&& ln -sf {GUEST_VENV}/bin/hostctl /usr/local/bin/hostctl", timeout=600)  # README, production step 2
    return guest.run(f"{GUEST_VENV}/bin/python -c 'import importlib.metadata as m; print(m.version(\"hostctl\"))'").stdout.strip()


def request(port: int, host: str, path: str = "/", timeout: float = 10.0) -> tuple[int, bytes]:
    """One HTTP request to 127.0.0.1:``port`` (a guest's forwarded port) with ``host`` as the Host header."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Host": host})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def get_json(guest: Guest, host: str, path: str = "/", timeout: float = 60.0) -> dict[str, Any]:
    status, body = request(guest.http_port, host, path, timeout=timeout)
    assert status == 200, f"{guest.name} {host}{path}: HTTP {status}: {body[:300]!r}"
    return json.loads(body)


def wait_served(guest: Guest, host: str, timeout: float = 120.0, predicate: Callable[[dict], bool] = lambda _: True) -> dict:
    """Wait until ``host`` answers 200 with JSON (from its own app) through the guest's forwarded HTTP port."""
    def attempt() -> dict | None:
        status, body = request(guest.http_port, host, timeout=10)
        if status != 200:
            return None
        data = json.loads(body)
        return data if predicate(data) else None
    return wait_for(attempt, timeout=timeout, interval=0.5, what=f"{host} to be served by {guest.name}")


def host_entry(guest: Guest, **extra: Any) -> dict[str, Any]:
    """The guest's entry in hostctl.yaml's ``hosts:`` (production paths; systemd's nginx)."""
    return {"address": "127.0.0.1", "port": guest.ssh_port, "user": "root", "key_file": str(guest.key),
            "known_hosts": str(guest.known_hosts), **SERVER_PATHS, **extra}


def deploy_inventory(guests: list[Guest], **settings: Any) -> Sandbox:
    """The control machine's inventory for ``guests`` (hosts named after them), per-customer users, cgroups auto."""
    box = Sandbox({"isolation": {"users": "auto"}, "cgroup": {"mode": "auto"}, "nginx": {"listen": "80"},
                   "hosts": {g.name: host_entry(g) for g in guests}, **settings})
    return box


def probe_app(domain: str, **extra: Any) -> dict[str, Any]:
    return {"domains": [domain], "wsgi": f"{APP_DIR}/probe.py", **extra}


def procs_of(guest: Guest, user: str) -> list[int]:
    out = guest.run(f"pgrep -u {shlex.quote(user)} || true").stdout.split()
    return [int(p) for p in out]


def server_hostctl(guest: Guest, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess:
    return guest.run(f"{HOSTCTL} -i {INVENTORY} " + " ".join(shlex.quote(a) for a in args), check=check, timeout=timeout)


def install_system_files(guest: Guest) -> None:
    """What the README ("Running it in production", step 4) tells the operator to do with system/; the units an
    older version did not render are skipped."""
    guest.run(f"cd {INVENTORY}/system && install -m 644 emperor.ini /etc/hostctl/emperor.ini && "
              "install -m 644 nginx-hostctl.conf /etc/nginx/conf.d/hostctl.conf && "
              "install -m 644 hostctl-*.service hostctl-*.timer /etc/systemd/system/ && systemctl daemon-reload && "
              "for unit in hostctl-limits.service hostctl-restore.service hostctl-logrotate.timer hostctl-certs.timer; do "
              "  if [ -f $unit ]; then systemctl enable --now $unit; fi; done && "
              "systemctl enable --now hostctl-emperor && nginx -t && systemctl reload nginx")


REBOOT_LIMIT = 600.0  # seconds from `systemctl reboot` until every customer answers (TCG on 2 shared cores: 25-300+ s to SSH)


def reboot_to_served(guest: Guest, domains: list[str], limit: float = REBOOT_LIMIT) -> float:
    """Reboot the guest; the seconds until every one of ``domains`` answers 200 from its app, with no command run."""
    before = guest.boot_id()
    started = time.monotonic()
    guest.run("systemctl reboot", check=False, timeout=30)
    guest.wait_ssh(limit, not_boot=before)
    for domain in domains:
        wait_served(guest, domain, timeout=max(5.0, limit - (time.monotonic() - started)))
    return time.monotonic() - started


# --- cgroup v2 limits on a guest (the same checks for a server that applies and one reached by deploy) ---------


def cgroup_file(guest: Guest, customer: str, name: str) -> str:
    return guest.run(f"cat /sys/fs/cgroup/hostctl/{customer}/{name}").stdout


def kv(text: str) -> dict[str, int]:
    return {k: int(v) for k, v in (line.split() for line in text.splitlines() if line.strip())}


def every_process_in_its_customers_cgroup(guest: Guest, customers: list[str]) -> None:
    """A real cgroup v2 host, and every process of each customer's user (master, workers, what they fork) is in
    the customer's cgroup; the app sees it from inside."""
    assert "memory" in guest.run("cat /sys/fs/cgroup/cgroup.controllers").stdout.split()
    for name in customers:
        data = get_json(guest, f"{name}.example")
        assert data["cgroup"].strip() == f"0::/hostctl/{name}", data["cgroup"]
        members = set(map(int, cgroup_file(guest, name, "cgroup.procs").split()))
        users = set(int(p) for p in guest.run(f"pgrep -u hc-{name}").stdout.split())
        assert users and users <= members, f"every process of hc-{name} is in its cgroup: {users - members}"
        assert {data["pid"], data["ppid"]} <= members


def memory_hog_is_oom_killed_while_the_neighbour_answers(guest: Guest, hog: str, neighbour: str) -> None:
    """Three requests that allocate 512 MB in ``hog``'s app: each worker is OOM-killed inside its cgroup (502),
    while ``neighbour`` answers every request and none of its processes is touched; the hog's master survives."""
    before = get_json(guest, f"{hog}.example")
    neighbour_procs = set(cgroup_file(guest, neighbour, "cgroup.procs").split())
    statuses: list[int] = []
    stop = threading.Event()

    def ask_neighbour() -> None:
        while not stop.is_set() or len(statuses) < 30:
            statuses.append(request(guest.http_port, f"{neighbour}.example", timeout=60)[0])

    loop = threading.Thread(target=ask_neighbour)
    loop.start()
    try:
        attacks = [request(guest.http_port, f"{hog}.example", "/alloc?mb=512", timeout=120)[0] for _ in range(3)]
    finally:
        stop.set()
        loop.join(timeout=300)
    assert attacks == [502, 502, 502], attacks
    assert len(statuses) >= 30 and set(statuses) == {200}, f"{neighbour} answered {statuses.count(200)} of {len(statuses)}"
    assert kv(cgroup_file(guest, hog, "memory.events"))["oom_kill"] >= 3
    assert kv(cgroup_file(guest, neighbour, "memory.events"))["oom_kill"] == 0
    assert set(cgroup_file(guest, neighbour, "cgroup.procs").split()) == neighbour_procs, f"{neighbour}'s processes were not touched"
    after = wait_served(guest, f"{hog}.example")
    assert after["ppid"] == before["ppid"], f"{hog}'s master survived and respawned its workers"


def fork_bomb_stops_at_pids_max_and_busy_loop_is_throttled(guest: Guest, hog: str, neighbour: str, workers: int,
                                                            pids_max: int) -> None:
    wait_for(lambda: len(cgroup_file(guest, hog, "cgroup.procs").split()) == workers + 1, timeout=60,
             what=f"{hog}'s master and {workers} workers")
    forked = get_json(guest, f"{hog}.example", "/fork?n=200")["result"]
    assert forked["errno"] == 11 and forked["forked"] == pids_max - workers - 1, forked  # master + workers + forked = pids.max
    assert kv(cgroup_file(guest, hog, "pids.events"))["max"] >= 1
    throttled = kv(cgroup_file(guest, hog, "cpu.stat"))["nr_throttled"]
    burnt = get_json(guest, f"{hog}.example", "/burn?cpu=0.5", timeout=120)["result"]
    assert burnt["cpu_seconds"] >= 0.5
    assert kv(cgroup_file(guest, hog, "cpu.stat"))["nr_throttled"] > throttled
    assert get_json(guest, f"{neighbour}.example")["uid"] != 0
