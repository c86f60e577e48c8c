"""Hostile tenants on a server reached by deploy: the guards of a local apply, run by the engine there.

The same harness as test_deploy_engine: host 'web' is this machine through a real
sshd, served by a real uWSGI Emperor and nginx (`hostctl serve` on the host's
directories), customers with their own Unix users and cgroup v1 leaves. Each test
tries on the host what tests/integration/test_hostile_*.py try locally:

- the account rule: `user:` naming nginx's user or a system account below the uid
  range is refused there (checked by the engine against the host's own user
  database), and nothing is written for that customer;
- a removed customer's daemon (double fork, setsid, ignores SIGTERM) is killed by
  the deploy that removes it, and its cgroup goes;
- `remove-customer --purge` removes its Unix user, log and socket directories on
  the host, without following a symlink the customer planted;
- a customer domain that another nginx server of the host serves is held back
  there, naming that server's file and line.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
from pathlib import Path

import psutil
import pytest

from tests.harness import APPS, Server, operator_nginx, wait_for
from tests.integration.test_deploy_engine import CONTROLLERS, Remote, remote  # noqa: F401 - the fixture

pytestmark = pytest.mark.integration


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _files_of(remote: Remote, customer: str) -> list[str]:
    return sorted(p.name for d in ("vassals", "nginx") for p in (remote.web.root / d).glob(f"{customer}_*"))


def test_deploy_refuses_nginx_s_user_and_a_system_account_on_the_host(remote: Remote) -> None:
    """Old code: the deploy wrote both customers' vassals there (`uid = www-data`, `uid = daemon`) and
    the Emperor started them as those accounts; only a local apply checked the account rule."""
    remote.customer("alpha")
    for name, user in (("evil", "www-data"), ("sys", "daemon")):
        app = remote.box.echo_app([f"{name}.example"], env={"CUSTOMER": name})
        app["wsgi"] = str(remote.web.apps / "echo.py")
        remote.box.write_customer(name, {"host": "web", "user": user, "apps": {"web": app}})
    remote.server = server = Server(remote.web)
    done = remote.hostctl("deploy", "--create-users", check=False)
    print(done.stdout, done.stderr)
    assert done.returncode == 1, done.stdout
    assert "evil: user www-data: Unix user 'www-data' is nginx's user" in done.stdout, done.stdout
    assert "sys: user daemon: Unix user 'daemon' has uid 1, outside isolation.uid_min..uid_max" in done.stdout, done.stdout
    assert _files_of(remote, "evil") == [] and _files_of(remote, "sys") == [], "nothing may be written for them"
    assert not (remote.web.root / "run" / "evil").exists() and not (remote.web.root / "log" / "sys").exists()
    assert server.wait_json("alpha.example")["uid"] == pwd.getpwnam(remote.users["alpha"]).pw_uid


def _with_daemon(remote: Remote) -> int:
    """alpha and beta on 'web' (alpha's app leaves daemons behind); alpha's first daemon, running as alpha."""
    shutil.copy(APPS / "daemon.py", remote.web.apps / "daemon.py")
    remote.customer("alpha", wsgi=str(remote.web.apps / "daemon.py"))
    remote.customer("beta")
    remote.server = server = Server(remote.web)
    remote.hostctl("deploy", "--create-users")
    data = server.wait_json("alpha.example", timeout=30)
    status, body = server.request("alpha.example", "/daemon", timeout=30)
    assert status == 200, body
    pid = json.loads(body)["daemon"]
    remote.daemons.append(pid)
    assert _alive(pid) and psutil.Process(pid).uids().real == data["uid"] == pwd.getpwnam(remote.users["alpha"]).pw_uid
    assert pid in {int(x) for x in Path(remote.leaf("alpha"), "cgroup.procs").read_text().split()}
    return pid


def test_deploy_kills_what_a_removed_customer_left_running_on_the_host(remote: Remote) -> None:
    """Old code: the deploy removed alpha's vassal there, but the daemon alpha's code forked kept running
    as alpha inside alpha's cgroup, which stayed (only a local apply killed it)."""
    daemon = _with_daemon(remote)
    assert remote.server is not None
    remote.server.wait_json("beta.example")
    remote.hostctl("remove-customer", "alpha")
    out = remote.hostctl("deploy")
    print(out.stdout)
    wait_for(lambda: not _alive(daemon), timeout=30, what=f"alpha's daemon {daemon} to be killed by the deploy")
    assert "alpha: killed" in out.stdout, out.stdout
    for c in CONTROLLERS:
        assert not os.path.exists(remote.leaf("alpha", c)), f"alpha's {c} cgroup is still there"
    assert remote.server.get_json("beta.example")["customer"] == "beta"


def test_purge_removes_the_user_and_directories_on_the_host_without_following_symlinks(remote: Remote) -> None:
    """Old code: `remove-customer --purge` then `deploy` left alpha's Unix user, its log and socket directories
    (and its daemon) on the host; the purge was recorded only for a local apply."""
    from tests.hostile import Canary, plant_symlink

    canary = Canary()
    try:
        daemon = _with_daemon(remote)
        uwsgi_dir = remote.web.root / "log" / "alpha" / "uwsgi"
        assert plant_symlink(remote.users["alpha"], canary.dir, str(uwsgi_dir / "evil"))  # for root's rmtree to follow
        removed = remote.hostctl("remove-customer", "alpha", "--purge")
        assert "removes its Unix user" in removed.stdout, removed.stdout
        out = remote.hostctl("deploy")
        print(out.stdout)
        assert "purged customer alpha" in out.stdout, out.stdout
        with pytest.raises(KeyError):
            pwd.getpwnam(remote.users["alpha"])
        assert not (remote.web.root / "log" / "alpha").exists() and not (remote.web.root / "run" / "alpha").exists()
        wait_for(lambda: not _alive(daemon), timeout=30, what=f"alpha's daemon {daemon} to be killed")
        assert canary.path.read_text().startswith("CANARY-"), "purge followed the customer's symlink"
        canary.assert_untouched("purge")
        assert remote.server is not None and remote.server.get_json("beta.example")["customer"] == "beta"
        # done there: the next deploy has nothing left to purge
        again = remote.hostctl("deploy")
        assert "purged" not in again.stdout, again.stdout
    finally:
        canary.cleanup()


def test_deploy_holds_back_a_domain_another_nginx_server_of_the_host_serves(remote: Remote) -> None:
    """Old code: deploy never read the host's nginx configuration (`nginx -T` ran only for a local apply), so
    evil's block for the operator's own panel.hosting.test went live there next to the operator's vhost
    (`nginx -t -q` only warns "conflicting server name", and -q hides it)."""
    ops = remote.web.root / "ops-nginx"
    test_command = operator_nginx(ops, remote.web.port, remote.web.root / "nginx")
    # the host's live configuration (what `nginx -t`/`-T` read there) has the operator's vhost; the serving nginx
    # of this test is `hostctl serve`'s, reloaded as before
    remote.settings["hosts"]["web"]["nginx"]["test_command"] = test_command
    remote.box.write_settings(remote.settings)
    remote.customer("alpha")
    remote.server = server = Server(remote.web)
    remote.hostctl("deploy", "--create-users")
    server.wait_json("alpha.example")
    app = remote.box.echo_app(["beta.example", "panel.hosting.test"], env={"CUSTOMER": "beta"})
    app["wsgi"] = str(remote.web.apps / "echo.py")
    remote.box.write_customer("beta", {"host": "web", "user": remote.users["beta"], "apps": {"web": app}})
    alpha = remote.box.echo_app(["alpha.example", "www.alpha.example"], env={"CUSTOMER": "alpha"})
    alpha["wsgi"] = str(remote.web.apps / "echo.py")
    remote.box.write_customer("alpha", {"host": "web", "user": remote.users["alpha"], "apps": {"web": alpha}})
    held = remote.hostctl("deploy", "--create-users", check=False)
    print(held.stdout, held.stderr)
    assert held.returncode == 1, held.stdout
    assert (f"beta: {remote.web.root / 'nginx' / 'beta_web.conf'}: 'panel.hosting.test' collides with server_name "
            f"'panel.hosting.test' of a server hostctl did not write ({ops}/sites/panel:2)") in held.stdout, held.stdout
    assert _files_of(remote, "beta") == [], "nothing may be written for beta there"
    assert "www.alpha.example" in (remote.web.root / "nginx" / "alpha_web.conf").read_text()  # the neighbour goes ahead
    assert server.wait_json("www.alpha.example")["customer"] == "alpha"
