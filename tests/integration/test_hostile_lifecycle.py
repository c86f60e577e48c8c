"""Hostile tenant, class 7: a stopped or removed customer's processes do not outlive it.

Real Emperor and nginx, two customers with their own users, each in its own cgroup v1
leaf. The customer's code leaves a daemon behind (double fork, setsid, ignores
SIGTERM/SIGHUP/SIGINT/SIGQUIT). `enabled: false` on its only app, then
`remove-customer --purge`: each apply must leave none of its processes running; the
purge also removes its cgroups, Unix user, log and socket directories, without
following a symlink the customer planted in them.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
from pathlib import Path
from typing import Iterator

import psutil
import pytest

from tests.harness import APPS, Sandbox, Server, wait_for
from tests.hostile import Canary, plant_symlink

pytestmark = pytest.mark.integration

V1 = "/sys/fs/cgroup"
CONTROLLERS = ("memory", "cpu", "pids")


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class Lifecycle:
    def __init__(self) -> None:
        tag = secrets.token_hex(3)
        self.users = {"alpha": f"hct-l{tag}", "beta": f"hct-m{tag}"}
        self.parent = f"hostctl-life-{tag}"
        self.box = Sandbox({"isolation": {"users": "per-customer"}, "cgroup": {"mode": "v1", "parent": self.parent}})
        shutil.copy(APPS / "daemon.py", self.box.apps / "daemon.py")
        self.server: Server | None = None
        self.canary = Canary()
        self.daemons: list[int] = []

    def write(self, name: str, enabled: bool = True) -> None:
        app = {"domains": [f"{name}.test"], "wsgi": str(self.box.apps / "daemon.py"), "env": {"CUSTOMER": name}}
        if not enabled:
            app["enabled"] = False
        self.box.write_customer(name, {"user": self.users[name], "apps": {"web": app}})

    def leaf(self, controller: str, customer: str = "alpha") -> Path:
        return Path(V1, controller, self.parent, customer)

    def daemon(self) -> int:
        assert self.server is not None
        data = self.server.wait_json("alpha.test", timeout=30)
        status, body = self.server.request("alpha.test", "/daemon", timeout=30)
        assert status == 200, body
        pid = __import__("json").loads(body)["daemon"]
        self.daemons.append(pid)
        assert _alive(pid) and psutil.Process(pid).uids().real == data["uid"] == pwd.getpwnam(self.users["alpha"]).pw_uid
        assert pid in {int(x) for x in (self.leaf("memory") / "cgroup.procs").read_text().split()}
        assert psutil.Process(pid).ppid() == 1 or psutil.Process(pid).ppid() != data["pid"], "the daemon left its worker"
        return pid

    def teardown(self) -> None:
        try:
            if self.server is not None:
                self.server.stop()
        finally:
            for pid in self.daemons:  # the old code leaves them: never leave them on the machine
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass
            for c in CONTROLLERS:
                for d in (self.leaf(c, "alpha"), self.leaf(c, "beta"), Path(V1, c, self.parent)):
                    if d.is_dir():
                        wait_for(lambda: _rmdir(d), timeout=20, what=f"{d} removed")
            for user in self.users.values():
                subprocess.run(["userdel", user], capture_output=True)
            self.box.cleanup()
            self.canary.cleanup()


def _rmdir(d: Path) -> bool:
    try:
        d.rmdir()
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return True


@pytest.fixture
def life() -> Iterator[Lifecycle]:
    if os.geteuid() != 0 or not os.access(f"{V1}/memory", os.W_OK):
        pytest.skip("needs root and a writable cgroup v1 memory controller")
    setup = Lifecycle()
    try:
        setup.write("alpha")
        setup.write("beta")
        setup.box.hostctl("apply", "--create-users")
        setup.server = Server(setup.box)
        yield setup
    finally:
        setup.teardown()


def test_stopping_and_purging_a_customer_kills_its_daemon_and_removes_its_traces(life: Lifecycle) -> None:
    assert life.server is not None
    life.server.wait_json("beta.test", timeout=30)
    first = life.daemon()

    # enabled: false on its only app: its vassal stops, and so does the daemon it left.
    life.write("alpha", enabled=False)
    out = life.box.hostctl("apply")
    wait_for(lambda: not _alive(first), timeout=30, what=f"alpha's daemon {first} to be killed by the stopping apply")
    assert "alpha: killed" in out.stdout, out.stdout
    assert not (life.leaf("memory") / "cgroup.procs").read_text().split(), "alpha's cgroup still has processes"
    assert life.leaf("memory").is_dir(), "a stopped (not removed) customer keeps its cgroup"

    # Back on, a new daemon; then removed with --purge.
    life.write("alpha")
    life.box.hostctl("apply")
    second = life.daemon()
    uwsgi_dir = life.box.path("log") / "alpha" / "uwsgi"
    assert plant_symlink(life.users["alpha"], life.canary.dir, str(uwsgi_dir / "evil"))  # for root's rmtree to follow
    removed = life.box.hostctl("remove-customer", "alpha", "--purge")
    assert "removes its Unix user" in removed.stdout
    out = life.box.hostctl("apply")
    print(out.stdout)
    wait_for(lambda: not _alive(second), timeout=30, what=f"alpha's daemon {second} to be killed by the removing apply")
    for c in CONTROLLERS:
        assert not life.leaf(c).exists(), f"alpha's {c} cgroup is still there"
    with pytest.raises(KeyError):
        pwd.getpwnam(life.users["alpha"])
    assert not (life.box.path("log") / "alpha").exists() and not (life.box.path("run") / "alpha").exists()
    assert (life.canary.path).read_text().startswith("CANARY-"), "purge followed the customer's symlink"
    life.canary.assert_untouched("purge")
    assert f"purged customer alpha" in out.stdout, out.stdout
    assert life.server.get_json("beta.test")["customer"] == "beta"


def test_kill_user_reaches_a_daemon_outside_any_cgroup() -> None:
    """Without cgroups (mode off) the customer's uid is what finds its processes: kill(-1) as that uid."""
    if os.geteuid() != 0:
        pytest.skip("needs root to create a user")
    from hostctl.engine.core import stopping

    user = "hct-k" + secrets.token_hex(3)
    subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                    "-K", "SYS_UID_MIN=20000", "-K", "SYS_UID_MAX=29999", user], check=True)
    daemon = None
    try:
        entry = pwd.getpwnam(user)
        spawn = ("import os, signal, time, sys\n"
                 "if os.fork() == 0:\n"
                 "    os.setsid()\n"
                 "    if os.fork() == 0:\n"
                 "        signal.signal(signal.SIGTERM, signal.SIG_IGN); print(os.getpid(), flush=True); os.closerange(0, 3)\n"
                 "        time.sleep(600)\n"
                 "    os._exit(0)\n"
                 "os.wait()\n")
        out = subprocess.run(["runuser", "-u", user, "--", "python3", "-c", spawn], capture_output=True, text=True, timeout=30)
        daemon = int(out.stdout.split()[0])
        assert _alive(daemon) and stopping.processes_of(entry.pw_uid) == [daemon]
        assert stopping.kill_user(entry.pw_uid, entry.pw_gid)
        wait_for(lambda: not _alive(daemon), timeout=10, what="the daemon to die")
        assert stopping.processes_of(entry.pw_uid) == []
        with pytest.raises(ValueError):
            stopping.kill_user(0, 0)
    finally:
        if daemon and _alive(daemon):
            os.kill(daemon, 9)
        subprocess.run(["userdel", user], capture_output=True)


def test_kill_cgroup_v2_uses_cgroup_kill_on_the_hosts_cgroup2_mount() -> None:
    """cgroup.kill (Linux >= 5.14) empties a v2 cgroup in one write; checked at this host's cgroup2 mount."""
    from hostctl.engine.core import stopping

    mount = next((line.split()[1] for line in Path("/proc/mounts").read_text().splitlines() if line.split()[2] == "cgroup2"), None)
    if os.geteuid() != 0 or mount is None or not os.access(mount, os.W_OK):
        pytest.skip("needs root and a writable cgroup2 mount")
    leaf = Path(mount, "hostctl-kill-" + secrets.token_hex(3))
    leaf.mkdir()
    procs = []
    try:
        if not (leaf / "cgroup.kill").exists():
            pytest.skip("this kernel has no cgroup.kill")
        for _ in range(3):  # ignore SIGTERM, like a daemon; start inside the cgroup before doing anything else
            proc = subprocess.Popen(["sh", "-c", f"echo $$ > {leaf}/cgroup.procs && trap '' TERM && exec sleep 600"],
                                    start_new_session=True)
            procs.append(proc)
        wait_for(lambda: len(stopping.cgroup_members(str(leaf))) == 3, timeout=10, what="3 processes in the cgroup")
        # timeout 0: one write of cgroup.kill and no SIGKILL of our own, so the kernel alone must kill them
        stopping.kill_cgroup([str(leaf)], v2=True, timeout=0)
        for proc in procs:
            assert proc.wait(timeout=10) == -9
        assert stopping.kill_cgroup([str(leaf)], v2=True, timeout=10) and not stopping.cgroup_members(str(leaf))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        wait_for(lambda: _rmdir(leaf), timeout=10, what=f"{leaf} removed")
