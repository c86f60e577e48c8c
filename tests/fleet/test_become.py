"""Non-root SSH to a Debian 12 server (systemd, cgroup v2): `become: sudo` gets what a root login gets.

The guest gets Debian's sudo package (the control machine's .deb; the guest has
no network) and an operator account 'deployer' that logs in with the fleet key
and has passwordless sudo through a drop-in in /etc/sudoers.d. Everything hostctl
does there then runs through `sudo -n`: bootstrap (apt-get, systemctl), a deploy
that creates the customer's user and its cgroup v2 with the inventory's limits.
With a sudo that wants a password the deploy fails naming the host, without
waiting; without `become` the inventory is refused before any SSH.
"""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from tests.fleet.fleet import booted, deploy_inventory, wait_served
from tests.fleet.vm import Guest
from tests.harness import Sandbox

pytestmark = [pytest.mark.fleet, pytest.mark.integration]

USER = "deployer"
DROP_IN = f"/etc/sudoers.d/{USER}"


def _sudo_deb() -> Path:
    found = sorted(glob.glob("/var/cache/apt/archives/sudo_*_amd64.deb"))
    if not found:
        pytest.skip("no sudo .deb in /var/cache/apt/archives (make deps installs sudo on the control machine)")
    return Path(found[-1])


def _sudoers(guest: Guest, rule: str) -> None:
    guest.run(f"printf '%s\\n' '{USER} {rule}' > {DROP_IN}.tmp && chmod 440 {DROP_IN}.tmp && visudo -c -q -f {DROP_IN}.tmp "
              f"&& mv {DROP_IN}.tmp {DROP_IN} && visudo -c -q")


@pytest.fixture(scope="module")
def guest(fleet_image) -> Iterator[Guest]:
    deb = _sudo_deb()
    with booted(fleet_image, ["sudo1"]) as (one,):
        # what the operator does once per server: sudo, an account for hostctl, passwordless sudo for it
        one.put(deb, "/tmp/sudo.deb")
        one.run("dpkg -i /tmp/sudo.deb && rm -f /tmp/sudo.deb", timeout=300)
        one.run(f"useradd --create-home --shell /bin/sh {USER} && usermod -p '*' {USER} && "
                f"install -d -m 700 -o {USER} -g {USER} /home/{USER}/.ssh && "
                f"install -m 600 -o {USER} -g {USER} /root/.ssh/authorized_keys /home/{USER}/.ssh/authorized_keys")
        _sudoers(one, "ALL=(ALL:ALL) NOPASSWD: ALL")
        yield one


@pytest.fixture(scope="module")
def control(guest: Guest) -> Iterator[Sandbox]:
    box = deploy_inventory([guest])
    settings = yaml.safe_load((box.inventory / "hostctl.yaml").read_text())
    settings["hosts"]["sudo1"].update(user=USER, become="sudo")
    box.write_settings(settings)
    box.write_customer("one", {"host": "sudo1", "limits": {"memory": "96M", "pids": 64},
                               "apps": {"web": {"domains": ["one.example"], "wsgi": "/srv/fleet/echo.py", "processes": 1}}})
    yield box
    box.cleanup()


def test_bootstrap_and_deploy_as_a_non_root_user_with_become_sudo(guest: Guest, control: Sandbox) -> None:
    assert guest.run(f"id -u {USER}").stdout.strip() != "0"
    booted_ = control.hostctl("bootstrap", "--host", "sudo1", timeout=1200)
    assert "Host 'sudo1' is ready" in booted_.stdout, booted_.stdout
    assert guest.run("systemctl is-active hostctl-emperor nginx").stdout.split() == ["active", "active"]

    done = control.hostctl("deploy", "--create-users", timeout=600)
    assert "Deploy complete on 1 host(s)." in done.stdout, done.stdout
    served = wait_served(guest, "one.example")
    assert served["uid"] == int(guest.run("id -u hc-one").stdout) and guest.run("getent passwd hc-one").stdout.endswith(
        ":/usr/sbin/nologin\n")
    # its worker is in its own cgroup v2, with the inventory's limits
    cgroup = guest.run(f"cat /proc/{served['pid']}/cgroup").stdout.strip()
    assert cgroup.startswith("0::/") and cgroup.endswith("/one"), cgroup
    leaf = "/sys/fs/cgroup" + cgroup[len("0::"):]
    assert guest.run(f"cat {leaf}/memory.max {leaf}/pids.max").stdout.split() == [str(96 << 20), "64"]
    # the engine ran as root there: its state is root's, in root's mode
    assert guest.run("stat -c '%U %a' /var/lib/hostctl/manifest.json").stdout.split()[0] == "root"


def test_a_sudo_that_wants_a_password_fails_naming_the_host(guest: Guest, control: Sandbox) -> None:
    _sudoers(guest, "ALL=(ALL:ALL) ALL")
    try:
        control.write_customer("two", {"host": "sudo1", "apps": {"web": {"domains": ["two.example"],
                                                                         "wsgi": "/srv/fleet/echo.py", "processes": 1}}})
        failed = control.hostctl("deploy", "--create-users", check=False, timeout=300)
        assert failed.returncode == 1, failed.stdout
        assert (f"host 'sudo1' ({USER}@127.0.0.1:{guest.ssh_port}): become: sudo: 'sudo -n' refused to run a command "
                "as root (sudo: a password is required)") in failed.stdout, failed.stdout
        assert guest.run("id hc-two", check=False).returncode != 0  # nothing was done there
    finally:
        _sudoers(guest, "ALL=(ALL:ALL) NOPASSWD: ALL")
        (control.inventory / "customers" / "two.yaml").unlink(missing_ok=True)


def test_without_become_the_inventory_is_refused_naming_the_host(control: Sandbox) -> None:
    settings = yaml.safe_load((control.inventory / "hostctl.yaml").read_text())
    settings["hosts"]["sudo1"].pop("become")
    control.write_settings(settings)
    refused = control.hostctl("deploy", check=False, timeout=300)
    assert refused.returncode == 1
    assert f"hosts.sudo1.user: host 'sudo1': the SSH user {USER!r} is not root" in refused.stderr, refused.stderr
