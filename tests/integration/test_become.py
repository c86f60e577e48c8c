"""Non-root SSH over a real sshd: a throw-away user with `become: sudo` gets what root gets; without it, an error.

Host 'web' is this machine through a real sshd (``tests/sshd.py``), logged into
as a throw-away non-root account (random name, removed at teardown) whose sudo
comes from a drop-in in /etc/sudoers.d (checked with ``visudo -c``, removed at
teardown). With passwordless sudo and ``become: sudo``, a deploy creates the
customers' Unix users and cgroups there exactly as it does as root, and
`plan --host`, `status --host` and `logs` go through the same sudo. Without
``become`` that host is an error naming it; with a sudo that wants a password,
every command is a clear error naming the host, not a prompt or a hang.
"""

from __future__ import annotations

import pwd
from pathlib import Path

import pytest

from tests.harness import Server, wait_for
from tests.integration.test_deploy_engine import Remote, _cgroup_of
from tests.integration.test_deploy_engine import remote  # noqa: F401 - the fixture: a host served by a real Emperor and nginx
from tests.integration.test_status_remote import _follow_remote

pytestmark = pytest.mark.integration


def _log_in_as(remote: Remote, user: str, **host: object) -> None:
    """Host 'web' reached as ``user``; bootstrap's system files go under the host's sandbox, not this machine's /etc."""
    system = remote.web.root / "system"
    remote.settings["hosts"]["web"].update(user=user, emperor_ini=str(system / "emperor.ini"), systemd_dir=str(system / "units"),
                                           nginx_include=str(system / "nginx-hostctl.conf"), **host)
    remote.box.write_settings(remote.settings)


def test_deploy_with_become_sudo_creates_users_and_cgroups_as_root_does(remote: Remote) -> None:
    user = remote.ssh.login_user(sudo="nopasswd")
    assert pwd.getpwnam(user).pw_uid != 0
    _log_in_as(remote, user, become="sudo")
    remote.customer("alpha", memory="64M")
    remote.customer("beta", memory="128M")
    remote.server = server = Server(remote.web)

    done = remote.hostctl("deploy", "--create-users")
    assert "web: 4 added, 0 changed, 0 removed; 4 file(s) uploaded" in done.stdout, done.stdout
    for name, customer_user in remote.users.items():
        account = pwd.getpwnam(customer_user)
        assert account.pw_shell == "/usr/sbin/nologin"
        data = server.wait_json(f"{name}.example")
        assert data["uid"] == account.pw_uid  # its vassal dropped to its own user
        for controller in ("memory", "pids"):
            assert _cgroup_of(data["pid"], controller) == f"/{remote.parent}/{name}", (name, controller)
    assert Path(remote.leaf("alpha"), "memory.limit_in_bytes").read_text().strip() == str(64 << 20)
    assert Path(remote.leaf("beta"), "memory.limit_in_bytes").read_text().strip() == str(128 << 20)
    # the engine ran as root there (not as the SSH user): its files and state are root's
    vassal = remote.web.root / "vassals" / "alpha_web.ini"
    assert (vassal.stat().st_uid, (remote.web.root / "state" / "manifest.json").stat().st_uid) == (0, 0)
    run_alpha = remote.web.root / "run" / "alpha"
    assert run_alpha.stat().st_uid == pwd.getpwnam(remote.users["alpha"]).pw_uid

    # the other remote commands go through the same sudo
    assert remote.hostctl("plan", "--host", "web", "--exit-code").returncode == 0
    status = remote.hostctl("status", "--host", "web", "--cpu-interval", "0")
    assert [line.split()[:4] for line in status.stdout.splitlines()[1:3]] == [
        ["web", "alpha", "web", "running"], ["web", "beta", "web", "running"]], status.stdout
    assert server.request("alpha.example", "/become-marker")[0] == 200
    wait_for(lambda: "echo: GET /become-marker" in remote.hostctl("logs", "alpha", "-n", "5").stdout, timeout=15,
             what="alpha's uWSGI log read on host web (as alpha's user, through sudo)")

    _follow_remote(remote.box, server, "alpha")  # logs -f through sudo; its remote tail stops when hostctl goes
    ran = remote.hostctl("run", "alpha", "--", "id", "-un")  # the release/run agent: root through sudo, then alpha
    assert ran.stdout.strip() == remote.users["alpha"], ran.stdout
    booted = remote.hostctl("bootstrap", "--host", "web", "--files-only")
    assert "Host 'web' is ready" in booted.stdout, booted.stdout
    assert (remote.web.root / "system" / "emperor.ini").stat().st_uid == 0

    # a limit change reaches the live cgroup through sudo too
    remote.customer("alpha", memory="96M")
    changed = remote.hostctl("deploy")
    assert "directories or limits of 1 customer(s) changed (alpha)" in changed.stdout, changed.stdout
    assert Path(remote.leaf("alpha"), "memory.limit_in_bytes").read_text().strip() == str(96 << 20)


@pytest.mark.parametrize("users", ["auto", "per-customer"])
def test_a_non_root_user_without_become_is_an_error_naming_the_host(remote: Remote, users: str) -> None:
    """Before: 'auto' silently ran the host's customers as the SSH user (no users, no cgroups)."""
    user = remote.ssh.login_user(sudo="nopasswd")  # sudo would work, but the inventory does not ask for it
    remote.settings["isolation"]["users"] = users
    _log_in_as(remote, user)
    remote.customer("alpha")
    refused = remote.hostctl("deploy", "--create-users", check=False)
    assert refused.returncode == 1, refused.stdout
    assert (f"hosts.web.user: host 'web': the SSH user {user!r} is not root and the host has no 'become: sudo'"
            in refused.stderr), refused.stderr
    assert not list((remote.web.root / "vassals").glob("*.ini")) and not (remote.web.root / "state" / "manifest.json").exists()
    for name in remote.users.values():
        with pytest.raises(KeyError):
            pwd.getpwnam(name)


def test_sudo_that_wants_a_password_is_a_clear_error_not_a_hang(remote: Remote) -> None:
    user = remote.ssh.login_user(sudo="password")
    _log_in_as(remote, user, become="sudo")
    remote.customer("alpha")
    where = f"host 'web' ({user}@127.0.0.1:{remote.settings['hosts']['web']['port']})"
    why = f"{where}: become: sudo: 'sudo -n' refused to run a command as root (sudo: a password is required)"
    deployed = remote.hostctl("deploy", "--create-users", check=False)  # the harness times out after 300 s
    assert deployed.returncode == 1 and "1 of 1 host(s) failed: web." in deployed.stdout, deployed.stdout
    assert why in deployed.stdout and "give this user passwordless sudo (NOPASSWD)" in deployed.stdout, deployed.stdout
    assert not list((remote.web.root / "vassals").glob("*.ini"))
    planned = remote.hostctl("plan", "--host", "web", check=False)
    assert planned.returncode == 1 and why in planned.stderr, planned.stderr
    booted = remote.hostctl("bootstrap", "--host", "web", "--files-only", check=False)
    assert booted.returncode == 1 and why in booted.stderr, booted.stderr
    rolled = remote.hostctl("rollback", "--host", "web", check=False)
    assert rolled.returncode == 1 and why in rolled.stderr, rolled.stderr
    status = remote.hostctl("status", "--host", "web", "--json", check=False)
    assert status.returncode == 1 and why in status.stdout, status.stdout
    logs = remote.hostctl("logs", "alpha", check=False)
    assert logs.returncode == 1 and why in logs.stdout, (logs.stdout, logs.stderr)
    ran = remote.hostctl("run", "alpha", "--", "true", check=False)
    assert ran.returncode == 1 and why in ran.stderr, (ran.stdout, ran.stderr)
