"""An upgrade of hostctl on a server that runs `hostctl apply` itself: the new version takes over what the old
version left (its users, manifest, generations) and puts it right, with no hand work."""

from __future__ import annotations

import http.client
import json
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from tests.fleet.fleet import (APP_DIR, INVENTORY, booted, build_wheel, figure, install_hostctl, install_system_files,
                               request, server_hostctl as hostctl, wait_served)
from tests.fleet.vm import Guest
from tests.harness import REPO, wait_for

pytestmark = [pytest.mark.fleet, pytest.mark.integration]

# The release a server is upgraded from: main as it was when the fleet started (flat package, 2026-11-30).
UPGRADE_FROM = "8421bc9"
CUSTOMERS = ("alpha", "beta", "gamma")  # gamma leaves after the upgrade: the new version must remove its files


@pytest.fixture(scope="module")
def old_wheel() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="fleet-old-") as tmp:
        source = Path(tmp) / "src"
        source.mkdir()
        subprocess.run(f"git -C {REPO} archive {UPGRADE_FROM} | tar -x -C {source}", shell=True, check=True)
        yield build_wheel(Path(tmp) / "wheel", source)


@pytest.fixture(scope="module")
def server(fleet_image) -> Iterator[Guest]:
    with booted(fleet_image, ["upgrade1"]) as (guest,):
        yield guest


def write_customer(guest: Guest, name: str) -> None:
    data = {"apps": {"web": {"domains": [f"{name}.example"], "wsgi": f"{APP_DIR}/probe.py", "processes": 1}}}
    guest.run(f"cat > {INVENTORY}/customers/{name}.yaml", input=yaml.safe_dump(data))


def served_by(guest: Guest, name: str, uid: int) -> bool:
    status, body = request(guest.http_port, f"{name}.example")
    return status == 200 and json.loads(body).get("uid") == uid


def unserved(guest: Guest, name: str, uid: int) -> bool:
    """``name`` no longer reaches its app: nginx's default server closes the connection (444), or another answer."""
    try:
        return not served_by(guest, name, uid)
    except http.client.RemoteDisconnected:
        return True


def uid(guest: Guest, name: str) -> int:
    return int(guest.run(f"id -u hc-{name}").stdout)


def test_the_new_version_takes_over_the_old_versions_server(server: Guest, old_wheel: Path, hostctl_wheel: Path) -> None:
    server.run("rm -f /etc/nginx/sites-enabled/default")
    old = install_hostctl(server, old_wheel)
    hostctl(server, "init", "--production")
    for name in CUSTOMERS:
        write_customer(server, name)
    install_system_files(server)
    hostctl(server, "apply", "--create-users")
    for name in CUSTOMERS:
        wait_for(lambda: served_by(server, name, uid(server, name)), timeout=120, interval=1, what=f"{name} (old version)")
    generations_before = hostctl(server, "rollback", "--list").stdout.strip()

    new = install_hostctl(server, hostctl_wheel)
    figure("upgrade on a server", f"hostctl {UPGRADE_FROM} -> {new}")
    hostctl(server, "init", "--refresh")  # the new version's system files (README: install them again)
    install_system_files(server)
    server.run("systemctl restart hostctl-emperor")
    server.run(f"rm {INVENTORY}/customers/gamma.yaml")
    plan = hostctl(server, "plan", "--no-diff").stdout
    assert "/etc/hostctl/vassals/gamma_web.ini" in plan, plan  # the old manifest was read: gamma's files are hostctl's
    hostctl(server, "apply")
    assert server.run("test -e /etc/hostctl/vassals/gamma_web.ini", check=False).returncode != 0
    assert server.run("test -e /etc/hostctl/nginx/gamma_web.conf", check=False).returncode != 0
    for name in ("alpha", "beta"):  # the accounts the old version created still serve their customers
        wait_for(lambda: served_by(server, name, uid(server, name)), timeout=120, interval=1, what=f"{name} (new version)")
    gamma = uid(server, "gamma")
    wait_for(lambda: unserved(server, "gamma", gamma), timeout=60, interval=1, what="gamma to be gone")
    assert hostctl(server, "plan", "--exit-code", "--no-diff", check=False).returncode == 0
    assert generations_before and generations_before.splitlines()[-1].split()[0] in hostctl(server, "rollback", "--list").stdout
