"""`hostctl deploy` from this machine (the control machine) to three Debian 12 servers: bootstrapped at once,
deployed to one, two and three at a time, one powered off in the middle of a deploy, `status`/`logs` over SSH.
One trio of guests for the module; the tests build on each other in order."""

from __future__ import annotations

import subprocess
import sys
import http.client
import time
import uuid
from typing import Iterator

import pytest

from tests.fleet.fleet import (USERADD, booted, cgroup_file, deploy_inventory, every_process_in_its_customers_cgroup, figure,
                               fork_bomb_stops_at_pids_max_and_busy_loop_is_throttled,
                               memory_hog_is_oom_killed_while_the_neighbour_answers, probe_app, request, wait_served)
from tests.fleet.vm import Guest
from tests.harness import Sandbox, run_cli, wait_for

NAMES = ["web1", "web2", "web3"]

pytestmark = [pytest.mark.fleet, pytest.mark.integration]


@pytest.fixture(scope="module")
def trio(fleet_image) -> Iterator[dict[str, Guest]]:
    with booted(fleet_image, NAMES) as guests:
        yield {g.name: g for g in guests}


@pytest.fixture(scope="module")
def control(trio: dict[str, Guest]) -> Iterator[Sandbox]:
    box = deploy_inventory(list(trio.values()))
    yield box
    box.cleanup()


def echo_customer(box: Sandbox, name: str, host: str, **extra) -> None:
    box.write_customer(name, {"host": host, "apps": {"web": {"domains": [f"{name}.example"], "wsgi": "/srv/fleet/echo.py",
                                                             "processes": 1, **extra}}})


def create_users(guest: Guest, *customers: str) -> None:
    """Customer users must exist on a host before a deploy (README, Multi-host: deploy checks, bootstrap makes none)."""
    for name in customers:
        guest.run(f"id hc-{name} >/dev/null 2>&1 || {USERADD} hc-{name}")


def uid(guest: Guest, customer: str) -> int:
    return int(guest.run(f"id -u hc-{customer}").stdout)


def test_bootstrap_three_servers_at_once(trio: dict[str, Guest], control: Sandbox) -> None:
    started = time.monotonic()
    procs = {name: subprocess.Popen([sys.executable, "-m", "hostctl", "-i", str(control.inventory), "bootstrap", "--host", name],
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for name in NAMES}
    outputs = {name: proc.communicate(timeout=1200)[0] for name, proc in procs.items()}
    figure("bootstrap --host of 3 provisioned guests at once", f"{time.monotonic() - started:.1f} s")
    for name, proc in procs.items():
        assert proc.returncode == 0 and f"Host '{name}' is ready" in outputs[name], outputs[name]
        assert trio[name].run("systemctl is-active hostctl-emperor nginx").stdout.split() == ["active", "active"]


def test_deploy_to_one_then_two_then_three_servers(trio: dict[str, Guest], control: Sandbox) -> None:
    for name, host in (("one", "web1"), ("two", "web2"), ("three", "web3")):
        create_users(trio[host], name)
    echo_customer(control, "one", "web1")
    done = control.hostctl("deploy", "--host", "web1", timeout=600)
    assert "Deploy complete on 1 host(s)." in done.stdout, done.stdout
    assert wait_served(trio["web1"], "one.example")["uid"] == uid(trio["web1"], "one")

    echo_customer(control, "two", "web2")
    done = control.hostctl("deploy", "--host", "web1", "--host", "web2", timeout=600)
    assert "web1: no changes" in done.stdout and "Deploy complete on 2 host(s)." in done.stdout, done.stdout
    assert wait_served(trio["web2"], "two.example")["uid"] == uid(trio["web2"], "two")

    echo_customer(control, "one", "web1", env={"GREETING": "second"})
    echo_customer(control, "three", "web3")
    started = time.monotonic()
    done = control.hostctl("deploy", timeout=600)
    figure("deploy to 3 guests at once (2 changed, 1 unchanged)", f"{time.monotonic() - started:.1f} s")
    assert "Deploy complete on 3 host(s)." in done.stdout and "web2: no changes" in done.stdout, done.stdout
    assert wait_served(trio["web1"], "one.example", predicate=lambda d: d["greeting"] == "second")
    assert wait_served(trio["web3"], "three.example")["uid"] == uid(trio["web3"], "three")
    # a customer is served only where it is placed: on web2, one.example reaches no customer's app
    # (nginx's default server closes such a connection without an answer: 444)
    try:
        status, body = request(trio["web2"].http_port, "one.example")
    except http.client.RemoteDisconnected:
        status, body = 444, b""
    assert status != 200 or not body.startswith(b"{"), (status, body[:200])
    again = control.hostctl("deploy", timeout=600)
    assert all(f"{name}: no changes" in again.stdout for name in NAMES), again.stdout


def test_status_and_logs_read_each_server_over_ssh(trio: dict[str, Guest], control: Sandbox) -> None:
    marker = f"/fleet/{uuid.uuid4().hex}"
    assert request(trio["web1"].http_port, "one.example", marker)[0] == 200
    status = run_cli(control.inventory, "status", "--host", "web1", "--cpu-interval", "0")
    assert status.returncode == 0, status.stdout + status.stderr
    rows = [line.split() for line in status.stdout.splitlines()[1:] if line.strip()]
    assert ["web1", "one", "web", "running"] in [row[:4] for row in rows], status.stdout
    everywhere = run_cli(control.inventory, "status", "--cpu-interval", "0")
    assert everywhere.returncode == 0, everywhere.stdout + everywhere.stderr
    assert {row.split()[1] for row in everywhere.stdout.splitlines()[1:] if row.strip()} >= {"one", "two", "three"}
    wait_for(lambda: f"echo: GET {marker}" in run_cli(control.inventory, "logs", "one", "-n", "20").stdout, timeout=60,
             interval=1, what="the app's line for the request in one's uWSGI log on web1")
    nginx_log = run_cli(control.inventory, "logs", "one", "--nginx", "-n", "20")
    assert nginx_log.returncode == 0 and f"GET {marker} " in nginx_log.stdout, nginx_log.stdout + nginx_log.stderr


def test_cgroup_v2_limits_hold_for_a_customer_deployed_from_the_control_machine(trio: dict[str, Guest], control: Sandbox) -> None:
    """The same limits as on a server that applies itself (test_production), given by a deploy: every vassal
    process in its customer's cgroup, a memory hog OOM-killed there while its neighbour ("calm") answers,
    a fork bomb stopped at pids.max, a busy loop throttled by cpu.max."""
    web1 = trio["web1"]
    create_users(web1, "hog", "calm")
    control.write_customer("hog", {"host": "web1", "limits": {"memory": "64M", "cpu": 0.5, "pids": 64},
                                   "apps": {"web": probe_app("hog.example", processes=2)}})
    control.write_customer("calm", {"host": "web1", "limits": {"memory": "256M"}, "apps": {"web": probe_app("calm.example")}})
    done = control.hostctl("deploy", "--host", "web1", timeout=600)
    assert "Deploy complete on 1 host(s)." in done.stdout, done.stdout
    for name in ("hog", "calm"):
        assert wait_served(web1, f"{name}.example")["uid"] == uid(web1, name)
    every_process_in_its_customers_cgroup(web1, ["hog", "calm"])
    assert cgroup_file(web1, "hog", "memory.max").strip() == str(64 << 20)
    assert cgroup_file(web1, "hog", "cpu.max").split() == ["50000", "100000"]
    assert cgroup_file(web1, "hog", "pids.max").strip() == "64"
    assert cgroup_file(web1, "calm", "memory.max").strip() == str(256 << 20)
    memory_hog_is_oom_killed_while_the_neighbour_answers(web1, "hog", "calm")
    fork_bomb_stops_at_pids_max_and_busy_loop_is_throttled(web1, "hog", "calm", workers=2, pids_max=64)


def test_a_server_powered_off_mid_deploy_the_others_finish_and_the_next_deploy_converges(
        trio: dict[str, Guest], control: Sandbox) -> None:
    web3 = trio["web3"]
    for name, host in (("four", "web1"), ("five", "web2"), ("six", "web3")):
        create_users(trio[host], name)
        echo_customer(control, name, host)
    # web3's deploy waits on its lock (held here); web3 loses power while the engine runs there
    web3.run("systemd-run --unit fleet-hold-lock --collect flock /var/lib/hostctl/deploy.lock "
             "flock /var/lib/hostctl/apply.lock sleep 900")
    proc = subprocess.Popen([sys.executable, "-m", "hostctl", "-i", str(control.inventory), "deploy"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: "/var/lib/hostctl" in web3.run("pgrep -af python3 || true").stdout, timeout=600, interval=1,
                 what="the deploy's engine to run on web3")
        web3.power_off()
        output = proc.communicate(timeout=600)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, output
    assert "web3: FAILED" in output and "1 of 3 host(s) failed: web3." in output, output
    wait_served(trio["web1"], "four.example")  # the other two finished
    wait_served(trio["web2"], "five.example")

    web3.power_on()
    web3.wait_ssh()
    started = time.monotonic()
    done = control.hostctl("deploy", timeout=600)
    figure("deploy converging a server back from a power cut", f"{time.monotonic() - started:.1f} s")
    assert "Deploy complete on 3 host(s)." in done.stdout, done.stdout
    assert wait_served(web3, "six.example")["uid"] == uid(web3, "six")
    assert wait_served(web3, "three.example")["uid"] == uid(web3, "three"), "what web3 served before the power cut"
    for host, name in (("web1", "four"), ("web2", "five"), ("web1", "one")):
        wait_served(trio[host], f"{name}.example")
