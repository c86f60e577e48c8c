"""A server that runs `hostctl apply` itself: `init --production`, its systemd units, cgroup v2 limits, TLS,
the Emperor stopped and killed, reboots. One guest for the module: the tests build on each other in order.

Customers: ``alpha`` (64M, 0.5 CPU, 64 pids: the one that misbehaves), ``beta`` (the neighbour that must keep
answering).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Iterator

import pytest
import yaml
from cryptography import x509

from tests.fleet.fleet import (APP_DIR, INVENTORY, booted, cgroup_file, every_process_in_its_customers_cgroup, figure,
                               fork_bomb_stops_at_pids_max_and_busy_loop_is_throttled, get_json, install_hostctl,
                               install_system_files, memory_hog_is_oom_killed_while_the_neighbour_answers, reboot_to_served,
                               server_hostctl as hostctl, wait_served)
from tests.fleet.vm import Guest
from tests import tlsclient
from tests.harness import wait_for
from tests.pki import CA

CUSTOMERS = {"alpha": {"memory": "64M", "cpu": 0.5, "pids": 64}, "beta": {"memory": "256M", "cpu": 1, "pids": 128}}

pytestmark = [pytest.mark.fleet, pytest.mark.integration]


def write_customer(guest: Guest, name: str, **app: object) -> None:
    data = {"limits": CUSTOMERS[name], "apps": {"web": {"domains": [f"{name}.example"], "wsgi": f"{APP_DIR}/probe.py",
                                                        "processes": 2, **app}}}
    guest.run(f"cat > {INVENTORY}/customers/{name}.yaml", input=yaml.safe_dump(data))


def emperor_pid(guest: Guest) -> int:
    return int(guest.run("systemctl show -p MainPID --value hostctl-emperor").stdout)


def masters(guest: Guest) -> dict[str, list[int]]:
    """The Emperor's children (vassal masters) by user."""
    out = guest.run(f"ps -o pid=,user= --ppid {emperor_pid(guest)} || true").stdout.split("\n")
    found: dict[str, list[int]] = {}
    for line in filter(None, (line.split() for line in out)):
        found.setdefault(line[1], []).append(int(line[0]))
    return found


@pytest.fixture(scope="module")
def prod(fleet_image) -> Iterator[Guest]:
    with booted(fleet_image, ["prod1"]) as (guest,):
        yield guest


def test_init_production_units_enabled_and_started_and_apply_serves(prod: Guest, hostctl_wheel: Path) -> None:
    """The README's production install, step by step, on a server that runs `hostctl apply` itself."""
    prod.run("rm -f /etc/nginx/sites-enabled/default")  # README, production step 1
    version = install_hostctl(prod, hostctl_wheel)
    hostctl(prod, "init", "--production")
    for name in ("alpha", "beta"):
        write_customer(prod, name)
    install_system_files(prod)
    started = time.monotonic()
    hostctl(prod, "apply", "--create-users")
    for name in ("alpha", "beta"):
        assert wait_served(prod, f"{name}.example")["uid"] == int(prod.run(f"id -u hc-{name}").stdout)
    figure("first apply on the server until both customers answer", f"{time.monotonic() - started:.1f} s")
    for unit in prod.run(f"ls {INVENTORY}/system").stdout.split():
        if unit.endswith((".service", ".timer")) and prod.run(f"grep -q '^\\[Install\\]' {INVENTORY}/system/{unit}", check=False).returncode == 0:
            assert prod.run(f"systemctl is-enabled {unit}").stdout.strip() == "enabled", unit
    assert prod.run("systemctl is-active hostctl-emperor nginx").stdout.split() == ["active", "active"]
    assert prod.run("systemctl --failed --no-legend --plain").stdout.strip() == ""
    assert hostctl(prod, "plan", "--exit-code", "--no-diff", check=False).returncode == 0
    figure("hostctl on the apply server", version)


def test_stopping_the_emperor_stops_its_vassals_cleanly(prod: Guest) -> None:
    """`systemctl stop` (and so every reboot) must not end with systemd killing vassals behind the Emperor."""
    since = prod.run("date +%s").stdout.strip()
    prod.run("systemctl stop hostctl-emperor", timeout=120)
    journal = prod.run(f"journalctl -u hostctl-emperor --since @{since} --no-pager -o cat").stdout
    assert "NO MERCY" not in journal, journal[-2000:]
    assert "SIGKILL" not in prod.run(f"journalctl --since @{since} --no-pager -o cat | grep -i 'hostctl-emperor' || true").stdout
    assert not prod.run("pgrep -u hc-alpha,hc-beta || true").stdout.strip(), "vassals outlived the Emperor"
    prod.run("systemctl start hostctl-emperor")
    for name in ("alpha", "beta"):
        wait_served(prod, f"{name}.example")


def test_every_process_of_a_vassal_is_in_its_customers_cgroup(prod: Guest) -> None:
    every_process_in_its_customers_cgroup(prod, list(CUSTOMERS))
    assert cgroup_file(prod, "alpha", "memory.max").strip() == str(64 << 20)
    assert cgroup_file(prod, "alpha", "cpu.max").split() == ["50000", "100000"]
    assert cgroup_file(prod, "alpha", "pids.max").strip() == "64"
    assert cgroup_file(prod, "beta", "memory.max").strip() == str(256 << 20)


def test_a_memory_hog_is_oom_killed_in_its_cgroup_while_the_neighbour_answers(prod: Guest) -> None:
    memory_hog_is_oom_killed_while_the_neighbour_answers(prod, "alpha", "beta")


def test_a_fork_bomb_stops_at_pids_max_and_a_busy_loop_is_throttled(prod: Guest) -> None:
    fork_bomb_stops_at_pids_max_and_busy_loop_is_throttled(prod, "alpha", "beta", workers=2, pids_max=64)


def https_json(guest: Guest, name: str, ca: bytes) -> tuple[dict, int]:
    """GET / over HTTPS with SNI ``name``, trusting only ``ca``: (the app's JSON, the certificate's serial)."""
    def attempt() -> tlsclient.Response | None:
        response = tlsclient.https(guest.https_port, name, ca)
        return response if response.status == 200 else None
    response = wait_for(attempt, timeout=120, interval=1, what=f"HTTPS for {name} on {guest.name}")
    return json.loads(response.body), response.cert.serial_number


TLS: dict[str, object] = {}  # the CA and serial of the certificate beta is served with (used after the reboot)


def test_tls_is_served_by_the_server_with_a_private_ca(prod: Guest) -> None:
    ca = CA.create("hostctl fleet CA")
    cert, key = ca.issue(["beta.example"])
    prod.run(f"install -d -m 700 {INVENTORY}/certs")
    prod.run(f"install -m 644 /dev/stdin {INVENTORY}/certs/beta.pem", input=cert)
    prod.run(f"install -m 600 /dev/stdin {INVENTORY}/certs/beta.key", input=key)
    write_customer(prod, "beta", tls={"certificate": "certs/beta.pem", "key": "certs/beta.key", "https_only": False})
    hostctl(prod, "apply")
    data, serial = https_json(prod, "beta.example", ca.pem)
    assert data["uid"] == int(prod.run("id -u hc-beta").stdout)
    assert serial == x509.load_pem_x509_certificate(cert).serial_number
    TLS.update(ca=ca.pem, serial=serial)
    # alpha has no certificate: no TLS handshake for its name
    with pytest.raises(Exception):
        tlsclient.https(prod.https_port, "alpha.example", ca.pem)
    status = hostctl(prod, "status", "--cpu-interval", "0")
    rows = {tuple(line.split()[:3]) for line in status.stdout.splitlines()[1:]}
    assert {("alpha", "web", "running"), ("beta", "web", "running")} <= rows, status.stdout


def test_the_emperor_killed_is_restarted_by_systemd_with_one_master_per_app(prod: Guest) -> None:
    old = emperor_pid(prod)
    prod.run("systemctl kill -s KILL hostctl-emperor")
    wait_for(lambda: emperor_pid(prod) not in (0, old), timeout=120, interval=1, what="systemd to restart the Emperor")
    for name in ("alpha", "beta"):
        wait_served(prod, f"{name}.example")
    found = wait_for(lambda: (m := masters(prod)) and all(len(m.get(f"hc-{n}", [])) == 1 for n in ("alpha", "beta")) and m,
                     timeout=60, interval=1, what="one master per app under the new Emperor")
    for name in ("alpha", "beta"):
        members = set(map(int, cgroup_file(prod, name, "cgroup.procs").split()))
        users = set(int(p) for p in prod.run(f"pgrep -u hc-{name}").stdout.split())
        assert users <= members and found[f"hc-{name}"][0] in members


def test_after_a_reboot_every_customer_answers_with_no_command_run(prod: Guest) -> None:
    seconds = reboot_to_served(prod, ["alpha.example", "beta.example"])
    figure("reboot to every customer served (apply server)", f"{seconds:.1f} s")
    assert masters(prod).keys() >= {"hc-alpha", "hc-beta"}
    assert https_json(prod, "beta.example", TLS["ca"])[1] == TLS["serial"]  # type: ignore[arg-type]
    for name in ("alpha", "beta"):  # the limits hold after the reboot
        assert get_json(prod, f"{name}.example")["cgroup"].strip() == f"0::/hostctl/{name}"
    assert cgroup_file(prod, "alpha", "memory.max").strip() == str(64 << 20)


def test_after_a_reboot_with_one_customers_state_broken_the_others_come_back(prod: Guest) -> None:
    # alpha's log directory replaced by a file: alpha cannot start, but must not keep beta down
    prod.run("rm -rf /var/log/hostctl/alpha && echo broken > /var/log/hostctl/alpha")
    seconds = reboot_to_served(prod, ["beta.example"])
    figure("reboot to served with one customer broken", f"{seconds:.1f} s")
    assert get_json(prod, "beta.example")["uid"] != 0
    # the boot-time restore (before nginx) set alpha's server block aside: nginx started for beta
    journal = prod.run("journalctl -b -u hostctl-restore --no-pager -o cat").stdout
    assert "alpha: FAILED" in journal and "set aside" in journal, journal[-3000:]
    assert prod.run("test -f /var/lib/hostctl/held/alpha_web.conf && systemctl is-active nginx").stdout.strip() == "active"
    # the operator repairs alpha; the next apply brings it back
    prod.run("rm /var/log/hostctl/alpha")
    hostctl(prod, "apply")
    assert wait_served(prod, "alpha.example", timeout=240)["cgroup"].strip() == "0::/hostctl/alpha"
    assert get_json(prod, "beta.example")["uid"] != 0
