"""Hostile tenants on cgroup v2 with systemd (issue 11): a subset of tests/integration/test_hostile_*.py, on a
Debian 12 guest that runs `hostctl apply` itself (init --production, its systemd units).

Customers: ``gone`` (an app that leaves a daemon behind: double fork, setsid, every catchable signal
ignored; removed with --purge), ``evil`` (own memory limit 512M, over the customers' 160M budget;
plants symlinks to a root-only canary in its log and socket directories) and ``good`` (the neighbour).
One guest for the module: the tests build on each other in order.
"""

from __future__ import annotations

import secrets
import shlex
import time
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from tests.fleet.fleet import (APP_DIR, INVENTORY, booted, figure, get_json, install_hostctl, install_system_files,
                               reboot_to_served, request, server_hostctl as hostctl, wait_served)
from tests.fleet.vm import Guest
from tests.harness import APPS, wait_for

pytestmark = [pytest.mark.fleet, pytest.mark.integration]

CGROUP = "/sys/fs/cgroup/hostctl"
BUDGET = 160 << 20
LIMITS = {"gone": {"memory": "128M", "pids": 64}, "evil": {"memory": "512M", "pids": 64}, "good": {"memory": "128M", "pids": 64}}
APPS_OF = {"gone": "daemon.py", "evil": "probe.py", "good": "probe.py"}
CANARY_DIR = "/root/hostile-canary"


def write_customer(guest: Guest, name: str) -> None:
    data = {"limits": LIMITS[name], "apps": {"web": {"domains": [f"{name}.example"], "wsgi": f"{APP_DIR}/{APPS_OF[name]}",
                                                     "processes": 1}}}
    guest.run(f"cat > {INVENTORY}/customers/{name}.yaml", input=yaml.safe_dump(data))


def kv(text: str) -> dict[str, int]:
    return {k: int(v) for k, v in (line.split() for line in text.splitlines() if line.strip())}


def canary(guest: Guest) -> str:
    """Content, owner and mode of the root-only canary (what no root action may change)."""
    return guest.run(f"stat -c '%u:%g %a %s' {CANARY_DIR}/canary && cat {CANARY_DIR}/canary").stdout


def as_customer(guest: Guest, user: str, command: str) -> str:
    return guest.run(f"runuser -u {user} -- sh -c {shlex.quote(command)} 2>&1; true").stdout


@pytest.fixture(scope="module")
def v2(fleet_image, hostctl_wheel: Path) -> Iterator[Guest]:
    with booted(fleet_image, ["hostile1"]) as (guest,):
        guest.put(APPS / "daemon.py", f"{APP_DIR}/daemon.py")
        guest.run("rm -f /etc/nginx/sites-enabled/default")
        install_hostctl(guest, hostctl_wheel)
        hostctl(guest, "init", "--production")
        settings = yaml.safe_load(guest.run(f"cat {INVENTORY}/hostctl.yaml").stdout)
        settings.setdefault("cgroup", {})["memory_budget"] = "160M"
        guest.run(f"cat > {INVENTORY}/hostctl.yaml", input=yaml.safe_dump(settings, sort_keys=False))
        for name in LIMITS:
            write_customer(guest, name)
        install_system_files(guest)
        hostctl(guest, "apply", "--create-users")
        for name in LIMITS:
            wait_served(guest, f"{name}.example")
        secret = f"CANARY-{secrets.token_hex(8)}"
        guest.run(f"install -d -m 700 {CANARY_DIR} && printf '%s\\n' {secret} > {CANARY_DIR}/canary && chmod 600 {CANARY_DIR}/canary")
        yield guest


def test_a_removed_customers_daemon_is_killed_and_its_cgroup_removed(v2: Guest) -> None:
    """cgroup.kill on v2: a daemon that double-forked, called setsid and ignores SIGTERM dies with its customer."""
    assert "memory" in v2.run("cat /sys/fs/cgroup/cgroup.controllers").stdout.split()  # a real cgroup v2 host
    made = get_json(v2, "gone.example", "/daemon")
    daemon = made["daemon"]
    assert str(daemon) in v2.run(f"cat {CGROUP}/gone/cgroup.procs").stdout.split(), "the daemon is in gone's cgroup"
    assert v2.run(f"ps -o ppid= -p {daemon}").stdout.strip() != str(made["pid"]), "the daemon left its worker"
    v2.run(f"kill -TERM {daemon}; sleep 1; kill -0 {daemon}")  # ignores SIGTERM: still alive
    hostctl(v2, "remove-customer", "gone", "--purge")
    started = time.monotonic()
    out = hostctl(v2, "apply")
    print(out.stdout)
    wait_for(lambda: v2.run(f"kill -0 {daemon}", check=False).returncode != 0, timeout=60,
             what=f"gone's daemon {daemon} to be killed by the removing apply")
    figure("v2: removing apply until gone's daemon is dead", f"{time.monotonic() - started:.1f} s")
    assert "purged customer gone" in out.stdout, out.stdout
    assert v2.run(f"test -e {CGROUP}/gone", check=False).returncode != 0, "gone's cgroup is removed"
    assert v2.run("id hc-gone", check=False).returncode != 0, "gone's user is removed"
    for name in ("evil", "good"):
        wait_served(v2, f"{name}.example")


def test_symlinks_in_the_customers_log_and_socket_dirs_never_make_root_write_across_respawn_and_reboot(v2: Guest) -> None:
    """evil links its uWSGI log, its rotated log and a name in its socket directory to a root-only canary, then
    kills its own master (the Emperor, root, starts a new one), then the server reboots (hostctl-restore, the
    Emperor and nginx start, as root). Its master opens the log only after dropping to evil (logto2), so its
    own link stops its own app and nothing else; the canary keeps its content, owner and mode."""
    before = canary(v2)
    target = f"{CANARY_DIR}/canary"
    uwsgi_logs = "/var/log/hostctl/evil/uwsgi"
    planted = as_customer(v2, "hc-evil", " && ".join([
        f"ln -sfn {target} {uwsgi_logs}/web.log", f"ln -sfn {target} {uwsgi_logs}/web.log.1",
        f"ln -sfn {target} /run/hostctl/evil/planted", "echo planted"]))
    assert "planted" in planted, planted
    # log_dir/evil itself is root's (nginx's master opens its logs there): nothing can be planted in it
    refused = as_customer(v2, "hc-evil", f"ln -sfn {target} /var/log/hostctl/evil/web.access.log && echo planted")
    assert "Permission denied" in refused and "planted" not in refused, refused
    since = v2.run("date +%s").stdout.strip()
    master = v2.run("pgrep -u hc-evil -o uwsgi").stdout.strip()
    v2.run(f"kill -9 {master}")

    def respawn_tried() -> bool:
        journal = v2.run(f"journalctl -u hostctl-emperor --since @{since} --no-pager -o cat | grep -c evil_web || true").stdout
        return canary(v2) != before or int(journal.strip() or 0) >= 2
    wait_for(respawn_tried, timeout=180, interval=2, what="the Emperor to start evil's master again")
    time.sleep(3)
    assert canary(v2) == before, "root wrote, chowned or chmodded the canary when the Emperor respawned evil"
    as_customer(v2, "hc-evil", f"rm -f {uwsgi_logs}/web.log")  # evil lets its app log again; the other links stay
    seconds = reboot_to_served(v2, ["evil.example", "good.example"])
    figure("v2: reboot until evil and good answer", f"{seconds:.1f} s")
    request(v2.http_port, "evil.example", "/")
    assert v2.run(f"test -L {uwsgi_logs}/web.log.1").returncode == 0, "the link evil planted is still there"
    assert canary(v2) == before, "root wrote, chowned or chmodded the canary across a reboot"


def test_the_budget_of_all_customers_oom_kills_one_under_its_own_limit(v2: Guest) -> None:
    """After the reboot above: the parent's memory.max (restored at boot) stops evil's 300 MB, although evil's own
    memory.max is 512M; good keeps answering."""
    assert v2.run(f"cat {CGROUP}/memory.max").stdout.strip() == str(BUDGET)
    assert v2.run(f"cat {CGROUP}/evil/memory.max").stdout.strip() == str(512 << 20)
    before = kv(v2.run(f"cat {CGROUP}/memory.events").stdout)
    status, _ = request(v2.http_port, "evil.example", "/alloc?mb=300", timeout=180)
    assert status == 502, status
    parent = kv(v2.run(f"cat {CGROUP}/memory.events").stdout)
    leaf = kv(v2.run(f"cat {CGROUP}/evil/memory.events").stdout)
    local = kv(v2.run(f"cat {CGROUP}/evil/memory.events.local").stdout)
    print("parent", parent, "evil", leaf, "evil local", local)
    assert parent["max"] > before.get("max", 0) and parent["oom_kill"] > before.get("oom_kill", 0), parent
    assert leaf["oom_kill"] >= 1 and local["max"] == 0, (leaf, local)  # the budget, not evil's own limit
    assert wait_served(v2, "good.example")["uid"] == int(v2.run("id -u hc-good").stdout)
    wait_served(v2, "evil.example")
