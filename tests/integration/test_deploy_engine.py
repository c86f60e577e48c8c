"""The engine on a server reached by deploy: every guarantee of a local apply, over real SSH, as root.

Host 'web' is this machine through a real sshd, served by a real uWSGI Emperor
and nginx (`hostctl serve` on the host's directories). Customers get their own
Unix users (`deploy --create-users`, removed at teardown) and cgroup v1 leaves
with the inventory's limits; a changed limit shows in `plan --host` and reaches
the live cgroup without reloading the vassal; a failing probe rolls that
customer back there; `rollback --host` puts the previous generation back; and
after a "reboot" (runtime directories and cgroups removed, Emperor and nginx
restarted) the boot-time unit's command brings every customer back, also when
one customer's runtime record is damaged.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from hostctl.targets import scaffold
from hostctl.inventory.schema import Settings
from tests.harness import Sandbox, Server, remove_cgroups
from tests.sshd import hosts_for

pytestmark = pytest.mark.integration

V1 = "/sys/fs/cgroup"
CONTROLLERS = ("memory", "cpu", "pids")


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root (creates users and cgroups)"
    if not os.access(f"{V1}/memory", os.W_OK) or not os.path.isfile(f"{V1}/memory/memory.limit_in_bytes"):
        return f"no writable cgroup v1 memory controller at {V1}/memory"
    return None


class Remote:
    """A multi-host inventory with one host, 'web', whose directories a real Emperor and nginx serve."""

    def __init__(self, box: Sandbox, web: Sandbox, ssh) -> None:
        tag = secrets.token_hex(3)
        self.box, self.web, self.ssh = box, web, ssh
        self.parent = f"hostctl-dt-{tag}"
        self.users = {name: f"hcd-{name[0]}{tag}" for name in ("alpha", "beta")}
        self.server: Server | None = None
        self.daemons: list[int] = []  # processes a customer's code left behind (killed at teardown, whatever happened)
        serve = web.root / "run" / "serve"
        host = ssh.start("web")
        settings = yaml.safe_load((box.inventory / "hostctl.yaml").read_text())
        settings.update({"isolation": {"users": "per-customer"}, "cgroup": {"mode": "v1", "parent": self.parent}})
        settings["hosts"] = {"web": host.settings(
            **{key: str(web.root / d) for key, d in (("emperor_dir", "vassals"), ("nginx_dir", "nginx"), ("run_dir", "run"),
                                                      ("log_dir", "log"), ("state_dir", "state"))},
            nginx={"listen": f"127.0.0.1:{web.port}",
                   "test_command": f"nginx -t -q -p {serve} -c {serve}/nginx.conf -e stderr",
                   "reload_command": f"kill -HUP $(cat {serve}/nginx.pid)"})}
        box.write_settings(settings)
        self.settings = settings
        shutil.copy(Path(__file__).resolve().parents[1] / "apps" / "echo.py", web.apps / "echo.py")

    def customer(self, name: str, greeting: str = "v1", memory: str = "64M", wsgi: str | None = None) -> None:
        app = self.box.echo_app([f"{name}.example"], env={"CUSTOMER": name, "GREETING": greeting},
                                probe={"path": "/", "status": 200, "timeout": 10})
        app["wsgi"] = wsgi or str(self.web.apps / "echo.py")
        self.box.write_customer(name, {"host": "web", "user": self.users[name],
                                       "limits": {"memory": memory, "pids": 64}, "apps": {"web": app}})

    def leaf(self, customer: str, controller: str = "memory") -> str:
        return f"{V1}/{controller}/{self.parent}/{customer}"

    def hostctl(self, *args: str, check: bool = True):
        return self.box.hostctl(*args, check=check, timeout=300)

    def teardown(self) -> None:
        for pid in self.daemons:  # first, or the server's stop finds them left running
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        try:
            if self.server is not None:
                self.server.stop()
        finally:
            try:
                for c in CONTROLLERS:
                    top = f"{V1}/{c}/{self.parent}"
                    leaves = [e.path for e in os.scandir(top) if e.is_dir()] if os.path.isdir(top) else []
                    remove_cgroups(leaves + [top], timeout=20)  # every customer's leaf (also those a test added), then the parent
            finally:
                for user in self.users.values():
                    subprocess.run(["userdel", user], capture_output=True)


def _cgroup_of(pid: int, controller: str) -> str:
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, names, path = line.split(":", 2)
        if controller in names.split(","):
            return path
    return ""


@pytest.fixture
def remote(monkeypatch: pytest.MonkeyPatch) -> Iterator[Remote]:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    box, web = Sandbox(), Sandbox()
    monkeypatch.setenv("XDG_CACHE_HOME", str(box.root / "cache"))
    try:
        with hosts_for(box) as ssh:
            setup = Remote(box, web, ssh)
            try:
                yield setup
            finally:
                setup.teardown()
    finally:
        web.cleanup()


def test_deploy_gives_remote_customers_users_cgroups_probes_rollback_and_a_restore_after_reboot(remote: Remote) -> None:
    remote.customer("alpha", memory="64M")
    remote.customer("beta", memory="128M")
    remote.server = server = Server(remote.web)

    # users: refused without --create-users (nothing changes there), made with it
    refused = remote.hostctl("deploy", check=False)
    assert refused.returncode == 1 and "these Unix users do not exist on host 'web'" in refused.stdout, refused.stdout
    assert not list((remote.web.root / "vassals").glob("*.ini"))
    done = remote.hostctl("deploy", "--create-users")
    assert "web: 4 added, 0 changed, 0 removed; 4 file(s) uploaded" in done.stdout, done.stdout
    for name, user in remote.users.items():
        assert pwd.getpwnam(user).pw_shell == "/usr/sbin/nologin"
    first = {name: server.wait_json(f"{name}.example") for name in ("alpha", "beta")}
    for name, data in first.items():
        assert data["uid"] == pwd.getpwnam(remote.users[name]).pw_uid
        # the vassal's worker runs in its customer's cgroup, with the inventory's limits (v1)
        for controller in ("memory", "pids"):
            assert _cgroup_of(data["pid"], controller) == f"/{remote.parent}/{name}", (name, controller)
    assert Path(remote.leaf("alpha"), "memory.limit_in_bytes").read_text().strip() == str(64 << 20)
    assert Path(remote.leaf("beta"), "memory.limit_in_bytes").read_text().strip() == str(128 << 20)
    assert Path(remote.leaf("alpha", "pids"), "pids.max").read_text().strip() == "64"
    run_alpha = remote.web.root / "run" / "alpha"
    assert (run_alpha.stat().st_uid, oct(run_alpha.stat().st_mode & 0o7777)) == (pwd.getpwnam(remote.users["alpha"]).pw_uid, "0o2750")

    # a limit change: shown by `plan --host` (read from the server), applied without reloading the vassal
    remote.customer("alpha", memory="96M")
    planned = remote.hostctl("plan", "--host", "web", "--exit-code", check=False)
    assert planned.returncode == 2 and "~ runtime alpha: directories or cgroup limits change" in planned.stdout, planned.stdout
    changed = remote.hostctl("deploy")
    assert "directories or limits of 1 customer(s) changed (alpha)" in changed.stdout, changed.stdout
    assert f"cgroup write {remote.leaf('alpha')}/memory.limit_in_bytes -> {96 << 20}" in changed.stdout
    assert Path(remote.leaf("alpha"), "memory.limit_in_bytes").read_text().strip() == str(96 << 20)
    assert server.get_json("alpha.example")["pid"] == first["alpha"]["pid"], "the vassal was not reloaded"
    assert remote.hostctl("plan", "--host", "web", "--exit-code").returncode == 0

    # a failing probe rolls that customer back there; the other customer's change goes live
    remote.customer("alpha", greeting="v2", memory="96M")
    remote.customer("beta", greeting="v2", memory="128M", wsgi=str(remote.web.apps / "missing.py"))
    probed = remote.hostctl("deploy", check=False)
    assert probed.returncode == 1, probed.stdout
    assert "beta: http://beta.example/: probe expected HTTP 200 within 10 s" in probed.stdout and "rolled back" in probed.stdout
    assert server.wait_json("alpha.example", lambda d: d["greeting"] == "v2")["greeting"] == "v2"
    assert server.wait_json("beta.example")["greeting"] == "v1"
    assert b"GREETING=v1" in (remote.web.root / "vassals" / "beta_web.ini").read_bytes()

    # rollback --host: alpha's previous generation goes back live there
    rolled = remote.hostctl("rollback", "--host", "web", "alpha")
    assert "Rollback on host 'web' to generation" in rolled.stdout and "0 added, 1 changed, 0 removed" in rolled.stdout, rolled.stdout
    assert server.wait_json("alpha.example", lambda d: d["greeting"] == "v1")["greeting"] == "v1"

    # "reboot": Emperor and nginx down, runtime directories and cgroups gone; beta's runtime record damaged
    server.stop()
    remote.server = None
    for entry in (remote.web.root / "run").iterdir():
        shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    remove_cgroups([remote.leaf(name, c) for c in CONTROLLERS for name in ("alpha", "beta")], timeout=20)
    state = remote.web.root / "state"
    (state / "runtime" / "beta.json").write_text("{damaged")
    unit = scaffold.restore_command(Settings(state_dir=str(state)))
    restored = subprocess.run(unit, shell=True, capture_output=True, text=True)
    assert restored.returncode == 1 and "1 customer(s) restored, 1 failed" in restored.stdout, restored
    assert "beta: FAILED" in restored.stderr
    assert Path(remote.leaf("alpha"), "memory.limit_in_bytes").read_text().strip() == str(96 << 20)
    remote.server = server = Server(remote.web)
    assert server.wait_json("alpha.example", timeout=30)["customer"] == "alpha"
    status, _ = server.request("beta.example")
    assert status == 502  # its socket directory is gone with its record: it stays down, alpha is up
    # the next deploy (beta's app fixed) writes beta's record and directories again: beta is back too
    remote.customer("beta", greeting="v3", memory="128M")
    remote.hostctl("deploy")
    assert remote.server.wait_json("beta.example", timeout=30)["customer"] == "beta"
