"""`hostctl bootstrap --host` of a fresh Debian 12 server, for real, then a deploy to it and a reboot.

The guest boots the ``fresh`` image: nginx and uWSGI are not installed, but
their .debs and Debian's package lists are in the image (the guest has no
network), so bootstrap's own `apt-get update` (fails fast: no DNS) and
`apt-get install` really run, as do its `systemctl` steps.
"""

from __future__ import annotations

import time
from typing import Iterator

import pytest

from tests.fleet.fleet import USERADD, booted, deploy_inventory, figure, get_json, probe_app, reboot_to_served, wait_served
from tests.fleet.image import SERVER_PACKAGES
from tests.fleet.vm import Guest
from tests.harness import Sandbox

pytestmark = [pytest.mark.fleet, pytest.mark.integration]  # integration too: `-m "not integration"` (unit runs) skips it


@pytest.fixture(scope="module")
def fresh(fleet_image) -> Iterator[Guest]:
    with booted(fleet_image, ["fresh1"], kind="fresh") as (guest,):
        yield guest


@pytest.fixture(scope="module")
def control(fresh: Guest) -> Iterator[Sandbox]:
    # cgroups off: the vassals stay in the Emperor's own unit cgroup (what a stop of the unit must handle)
    box = deploy_inventory([fresh], cgroup={"mode": "off"})
    box.write_customer("acme", {"host": "fresh1", "apps": {"web": probe_app("acme.example")}})
    yield box
    box.cleanup()


def _installed(guest: Guest, package: str) -> bool:
    done = guest.run(f"dpkg-query -W -f='${{Status}}' {package}", check=False)
    return done.returncode == 0 and "install ok installed" in done.stdout


def test_bootstrap_installs_and_starts_everything_on_a_fresh_server(fresh: Guest, control: Sandbox) -> None:
    assert not any(_installed(fresh, p) for p in SERVER_PACKAGES), "the fresh image must not have nginx/uWSGI yet"
    started = time.monotonic()
    done = control.hostctl("bootstrap", "--host", "fresh1", timeout=1200)
    figure("bootstrap --host of a fresh guest (apt-get install included)", f"{time.monotonic() - started:.1f} s")
    assert "Host 'fresh1' is ready" in done.stdout, done.stdout
    assert all(_installed(fresh, p) for p in SERVER_PACKAGES), done.stdout
    for unit in ("hostctl-emperor", "nginx"):
        assert fresh.run(f"systemctl is-enabled {unit}").stdout.strip() == "enabled"
        assert fresh.run(f"systemctl is-active {unit}").stdout.strip() == "active"
    # nginx really includes hostctl's server blocks, and the Emperor watches the vassal directory
    assert "include /etc/hostctl/nginx/*.conf" in fresh.run("nginx -T 2>/dev/null").stdout
    emperor = fresh.run("systemctl show -p MainPID --value hostctl-emperor").stdout.strip()
    assert "/etc/hostctl/vassals" in fresh.run(f"tr '\\0' ' ' < /proc/{emperor}/cmdline; cat /etc/hostctl/emperor.ini").stdout


def test_a_deploy_serves_the_customer_as_its_own_user(fresh: Guest, control: Sandbox) -> None:
    fresh.run(f"id hc-acme >/dev/null 2>&1 || {USERADD} hc-acme")
    started = time.monotonic()
    done = control.hostctl("deploy", timeout=600)
    figure("first deploy to a bootstrapped guest", f"{time.monotonic() - started:.1f} s")
    assert "Deploy complete on 1 host(s)." in done.stdout, done.stdout
    served = wait_served(fresh, "acme.example")
    assert served["uid"] == int(fresh.run("id -u hc-acme").stdout)
    again = control.hostctl("deploy")
    assert "fresh1: no changes" in again.stdout, again.stdout


def test_stopping_the_emperor_stops_its_vassals_without_systemd_killing_them(fresh: Guest, control: Sandbox) -> None:
    """`systemctl stop hostctl-emperor` (and so every reboot): the Emperor stops its vassals; systemd must not
    signal them behind its back (a SIGTERM reloads a uWSGI master, and the Emperor then waits 30 s: NO MERCY)."""
    assert fresh.run("pgrep -u hc-acme").stdout.split(), "acme runs before the stop"
    unit_cgroup = fresh.run("systemctl show -p ControlGroup --value hostctl-emperor").stdout.strip()
    master = fresh.run("pgrep -o -u hc-acme").stdout.strip()
    assert fresh.run(f"cat /proc/{master}/cgroup").stdout.strip() == f"0::{unit_cgroup}", "vassals in the unit's cgroup"
    since = fresh.run("date +%s").stdout.strip()
    started = time.monotonic()
    fresh.run("systemctl stop hostctl-emperor", timeout=180)
    figure("systemctl stop hostctl-emperor (1 vassal, in its unit)", f"{time.monotonic() - started:.1f} s")
    journal = fresh.run(f"journalctl -u hostctl-emperor --since @{since} --no-pager -o cat").stdout
    assert "NO MERCY" not in journal, journal[-3000:]
    assert not fresh.run("pgrep -u hc-acme || true").stdout.strip(), "the vassal outlived the Emperor"
    fresh.run("systemctl start hostctl-emperor")
    wait_served(fresh, "acme.example")


def test_after_a_reboot_the_customer_is_served_again_with_no_command_run(fresh: Guest, control: Sandbox) -> None:
    get_json(fresh, "acme.example")
    seconds = reboot_to_served(fresh, ["acme.example"])
    figure("reboot to served (server reached by deploy)", f"{seconds:.1f} s")
    assert get_json(fresh, "acme.example")["uid"] == int(fresh.run("id -u hc-acme").stdout)
