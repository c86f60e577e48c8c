"""Hostile tenants on a Debian 12 server reached by deploy (systemd, cgroup v2): the engine's guards run there.

One ``served`` guest, bootstrapped, then deployed to from this machine. What a local apply
guarantees, checked on the server with its own user database, cgroups and nginx:

- the account rule reads the server's users: an account that exists only there, with a system
  uid, is refused there (this machine has no such user, so only the server could decide);
- a customer removed with ``--purge``: its daemon (double fork, setsid, ignores SIGTERM) is
  killed through ``cgroup.kill`` and its uid, its v2 cgroup goes, then its user and directories;
- a customer domain that the operator's own nginx site on the server serves is held back there,
  naming that site's file and line.
"""

from __future__ import annotations

import json
import pwd
import secrets
from typing import Iterator

import pytest

from tests.fleet.fleet import APP_DIR, USERADD, booted, deploy_inventory, request, wait_served
from tests.fleet.vm import Guest
from tests.harness import APPS, Sandbox

pytestmark = [pytest.mark.fleet, pytest.mark.integration]

NAME = "hostile1"


@pytest.fixture(scope="module")
def guest(fleet_image) -> Iterator[Guest]:
    with booted(fleet_image, [NAME]) as (g,):
        g.put(APPS / "daemon.py", f"{APP_DIR}/daemon.py")
        yield g


@pytest.fixture(scope="module")
def control(guest: Guest) -> Iterator[Sandbox]:
    box = deploy_inventory([guest])
    done = box.hostctl("bootstrap", "--host", NAME, timeout=1200)
    assert f"Host '{NAME}' is ready" in done.stdout, done.stdout
    yield box
    box.cleanup()


def _customer(box: Sandbox, name: str, user: str, *domains: str, wsgi: str = "echo.py") -> None:
    box.write_customer(name, {"host": NAME, "user": user, "apps": {"web": {
        "domains": list(domains) or [f"{name}.example"], "wsgi": f"{APP_DIR}/{wsgi}", "processes": 1}}})


def test_the_account_rule_reads_the_servers_own_users(guest: Guest, control: Sandbox) -> None:
    """Old code: deploy wrote evil's vassal with `uid = <a system account of the server>` and the Emperor ran it."""
    system = f"svc{secrets.token_hex(3)}"
    guest.run(f"useradd --system --no-create-home --shell /usr/sbin/nologin {system}")
    with pytest.raises(KeyError):
        pwd.getpwnam(system)  # not on this machine: only the server's user database knows it
    guest.run(f"id hc-alpha >/dev/null 2>&1 || {USERADD} hc-alpha")
    _customer(control, "alpha", "hc-alpha")
    _customer(control, "evil", system)
    done = control.hostctl("deploy", check=False, timeout=600)
    uid = int(guest.run(f"id -u {system}").stdout)
    assert done.returncode == 1, done.stdout
    assert f"evil: user {system}: Unix user '{system}' has uid {uid}, outside isolation.uid_min..uid_max" in done.stdout, done.stdout
    assert guest.run("ls /etc/hostctl/vassals /etc/hostctl/nginx").stdout.count("evil_web") == 0
    assert wait_served(guest, "alpha.example")["uid"] == int(guest.run("id -u hc-alpha").stdout)
    (control.inventory / "customers" / "evil.yaml").unlink()


def test_purge_kills_the_daemon_through_its_v2_cgroup_and_removes_its_traces(guest: Guest, control: Sandbox) -> None:
    """Old code: the removing deploy left the daemon running as hc-alpha in its cgroup, and the user and
    directories stayed (only a local apply killed and purged)."""
    _customer(control, "alpha", "hc-alpha", wsgi="daemon.py")
    control.hostctl("deploy", timeout=600)
    wait_served(guest, "alpha.example", predicate=lambda d: "pid" in d)
    status, body = request(guest.http_port, "alpha.example", "/daemon", timeout=60)
    assert status == 200, body
    daemon = json.loads(body)["daemon"]
    cgroup = guest.run(f"cat /proc/{daemon}/cgroup").stdout.strip()
    assert cgroup.startswith("0::") and cgroup.endswith("/alpha"), cgroup  # v2: one hierarchy, the customer's leaf
    leaf = "/sys/fs/cgroup" + cgroup[3:]
    assert guest.run(f"stat -c %U /proc/{daemon}").stdout.strip() == "hc-alpha"
    removed = control.hostctl("remove-customer", "alpha", "--purge")
    assert f"`hostctl deploy` to host '{NAME}'" in removed.stdout, removed.stdout
    done = control.hostctl("deploy", timeout=600)
    print(done.stdout)
    assert "alpha: killed" in done.stdout and "purged customer alpha" in done.stdout, done.stdout
    assert guest.run(f"kill -0 {daemon}", check=False).returncode != 0, "the daemon outlived its customer"
    assert guest.run(f"test -e {leaf}", check=False).returncode != 0, f"{leaf} is still there"
    assert guest.run("id hc-alpha", check=False).returncode != 0, "the user is still there"
    assert guest.run("test -e /run/hostctl/alpha || test -e /var/log/hostctl/alpha", check=False).returncode != 0


def test_a_domain_the_operators_own_site_serves_is_held_back_on_the_server(guest: Guest, control: Sandbox) -> None:
    """Old code: deploy never read the server's `nginx -T`; beta's block for panel.hosting.test went live next to
    the operator's site (nginx -t -q exits 0 on "conflicting server name")."""
    guest.run("printf 'server {\\n    listen 80;\\n    server_name panel.hosting.test;\\n    return 200 panel;\\n}\\n' "
              "> /etc/nginx/sites-enabled/panel && nginx -t -q && systemctl reload nginx")
    guest.run(f"id hc-beta >/dev/null 2>&1 || {USERADD} hc-beta")
    _customer(control, "beta", "hc-beta", "beta.example", "panel.hosting.test")
    done = control.hostctl("deploy", check=False, timeout=600)
    assert done.returncode == 1, done.stdout
    assert ("beta: /etc/hostctl/nginx/beta_web.conf: 'panel.hosting.test' collides with server_name 'panel.hosting.test' "
            "of a server hostctl did not write (/etc/nginx/sites-enabled/panel:1)") in done.stdout, done.stdout
    assert guest.run("test -e /etc/hostctl/nginx/beta_web.conf", check=False).returncode != 0
    assert request(guest.http_port, "panel.hosting.test") == (200, b"panel")
