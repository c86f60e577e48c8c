"""An app's life with real processes: restart, the customer's reload trigger, `hostctl run`, workers and cron.

One real Emperor + nginx serves one customer as its own Unix user (made by
`apply --create-users`, removed at teardown) in its own cgroup v1 leaf. Its
app lives in a directory the customer owns, has a worker that appends a line
every second and a cron job every minute.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

from tests.harness import APPS, Sandbox, Server, require_cgroup_v1, tear_down, wait_for
from tests.integration.test_limits import CONTROLLERS, V1, _v2_root

pytestmark = pytest.mark.integration

WORKER = "echo worker-started-as-$(id -u); while true; do echo \"$(id -u) $$ $(pwd)\" >> beat.log; sleep 1; done"
CRON = "id -u > cron.out; pwd >> cron.out; cat /proc/self/cgroup >> cron.out"


class OneCustomer:
    """A sandbox serving one customer as its own Unix user in its own cgroup v1 leaf; teardown removes all."""

    def __init__(self, customer: str, letter: str) -> None:
        tag = secrets.token_hex(3)
        self.customer = customer
        self.user = f"hct-{letter}{tag}"
        self.parent = f"hostctl-test-{tag}"
        self.box = Sandbox({"isolation": {"users": "per-customer"}, "cgroup": {"mode": "v1", "parent": self.parent},
                            "defaults": {"processes": 2}})
        self.server: Server | None = None

    @property
    def uid(self) -> int:
        return pwd.getpwnam(self.user).pw_uid

    def teardown(self) -> None:
        tear_down(self.box, self.server, [self.user],
                  cgroups=[f"{V1}/{c}/{self.parent}{sub}" for c in CONTROLLERS for sub in ("", f"/{self.customer}")])


class Life(OneCustomer):
    def __init__(self) -> None:
        super().__init__("life", "l")
        self.appdir = self.box.path("srv") / "web"
        self.appdir.mkdir(parents=True)
        shutil.copy(APPS / "probe.py", self.appdir / "app.py")

    def get(self, path: str = "/") -> dict:
        assert self.server is not None
        return self.server.get_json("life.test", path)

    def as_customer(self, *argv: str) -> None:
        subprocess.run(["runuser", "-u", self.user, "--", *argv], check=True, cwd=self.appdir)


@pytest.fixture(scope="module")
def life() -> Iterator[Life]:
    require_cgroup_v1()
    setup = Life()
    try:
        setup.box.write_customer("life", {
            "user": setup.user,
            "limits": {"memory": "256M", "pids": 128},
            "apps": {"web": {"domains": ["life.test"], "wsgi": "app.py", "chdir": str(setup.appdir),
                             "env": {"CUSTOMER": "life", "GREETING": "50% off, $(not expanded)"},
                             "workers": {"beat": WORKER},
                             "cron": [{"schedule": "* * * * *", "command": CRON}]}},
        })
        setup.box.hostctl("apply", "--create-users")
        subprocess.run(["chown", "-R", f"{setup.user}:", str(setup.appdir)], check=True)
        setup.server = Server(setup.box)
        wait_for(lambda: setup.get()["uid"] == setup.uid, timeout=30, what="the app to answer as the customer")
        yield setup
    finally:
        setup.teardown()


def _workers(life: Life) -> set[int]:
    """The pids of the app's uWSGI workers (by asking until both answered)."""
    seen: set[int] = set()
    wait_for(lambda: seen.add(life.get()["pid"]) or len(seen) >= 2, timeout=30, what="both workers")
    return seen


def _requests_during(life: Life, action) -> list[int]:
    """HTTP statuses of a request loop that runs while ``action()`` does and a moment after."""
    assert life.server is not None
    statuses: list[int] = []
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            statuses.append(life.server.request("life.test", timeout=30)[0])

    thread = threading.Thread(target=loop)
    thread.start()
    try:
        action()
    finally:
        stop.set()
        thread.join(timeout=60)
    return statuses


def test_graceful_restart_replaces_the_workers_without_a_failed_request(life: Life) -> None:
    before = _workers(life)
    master = life.get()["ppid"]

    def restart_and_wait() -> None:
        out = life.box.hostctl("restart", "life")
        assert "life_web: reloading gracefully" in out.stdout
        wait_for(lambda: life.get()["pid"] not in before, timeout=60, what="new workers")
        time.sleep(0.5)

    statuses = _requests_during(life, restart_and_wait)
    failed = len(statuses) - statuses.count(200)
    # uWSGI's graceful reload (SIGHUP) has a race: a worker told to finish may drop a connection it had just
    # accepted (unbit/uwsgi#1375); CI saw 1 of 4,629 requests get 502 once. A restart that is not graceful
    # (socket closed, master gone) fails every request of its window: hundreds in this loop.
    assert statuses and failed <= 1, f"{failed} of {len(statuses)} requests failed: {sorted(set(statuses))}"
    after = _workers(life)
    assert not after & before
    assert life.get()["ppid"] == master, "a graceful reload keeps the master (it re-executes itself)"


def test_hard_restart_stops_and_starts_the_master(life: Life) -> None:
    master = life.get()["ppid"]
    out = life.box.hostctl("restart", "life", "--app", "web", "--hard")
    assert "stopped and started again" in out.stdout
    data = wait_for(lambda: (d := life.get()) and d["ppid"] != master and d, timeout=60, what="a new master")
    assert data["uid"] == life.uid


def test_the_customer_reloads_its_app_by_touching_its_trigger(life: Life) -> None:
    before = _workers(life)
    life.as_customer("touch", str(life.appdir / "reload.touch"))
    wait_for(lambda: not _workers(life) & before, timeout=60, what="the customer's reload")


def test_root_never_follows_the_customers_trigger_symlink(life: Life) -> None:
    """The master checks the trigger after dropping to the customer: a link to a file only root can
    reach never fires, however often root touches the target (verified on Debian's uWSGI 2.0.21)."""
    secret_dir = Path(f"/root/hostctl-test-{secrets.token_hex(3)}")
    secret_dir.mkdir(mode=0o700)
    try:
        target = secret_dir / "target"
        target.touch()
        trigger = life.appdir / "reload.touch"
        trigger.unlink(missing_ok=True)  # a vanished trigger is a change too: let that reload pass first
        _workers(life)
        time.sleep(3)
        life.as_customer("ln", "-s", str(target), str(trigger))
        time.sleep(3)
        settled = _workers(life)
        for _ in range(3):
            now = time.time() + 5
            os.utime(target, (now, now))
            time.sleep(1.5)
        assert _workers(life) == settled, "root's touch of the link's target reloaded the app"
        log = (life.box.path("log") / "life" / "uwsgi" / "web.log").read_text(errors="replace")
        assert f"{trigger} has been touched" in log  # the vanished trigger's reload; root's touches added none
    finally:
        shutil.rmtree(secret_dir, ignore_errors=True)
        (life.appdir / "reload.touch").unlink(missing_ok=True)


def test_run_executes_as_the_customer_in_its_cgroup_with_the_apps_environment(life: Life) -> None:
    script = ('id -u; id -G; pwd; echo "$CUSTOMER|$GREETING|$HOME"; cat /proc/self/cgroup; '
              'echo to-stderr >&2; exit 3')
    proc = life.box.hostctl("run", "life", "--", "sh", "-c", script, check=False)
    assert proc.returncode == 3, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == str(life.uid)
    assert "0" not in lines[1].split(), "no root group left"
    assert lines[2] == str(life.appdir)
    assert lines[3].startswith("life|50% off, $(not expanded)|")
    for controller in CONTROLLERS:
        assert any(line.endswith(f":{controller}:/{life.parent}/life") for line in lines[4:]), (controller, lines)
    assert "to-stderr" in proc.stderr
    assert life.box.hostctl("run", "life", "--", "true").returncode == 0
    missing = life.box.hostctl("run", "life", "--", "no-such-command-here", check=False)
    assert missing.returncode == 127 and "no-such-command-here" in missing.stderr
    assert life.box.hostctl("run", "nobody-here", "--", "true", check=False).returncode == 1


def _beat_pid(life: Life) -> int:
    """The worker's shell, from the last line it wrote (uid, pid, cwd), checked to be the customer's."""
    def last() -> list[str] | None:
        lines = (life.appdir / "beat.log").read_text().splitlines()
        return lines[-1].split() if lines else None

    fields = wait_for(last, timeout=30, what="the worker's output")
    assert fields[0] == str(life.uid) and fields[2] == str(life.appdir)
    return int(fields[1])


def test_worker_runs_as_the_customer_in_its_cgroup_and_restarts_with_the_app(life: Life) -> None:
    pid = _beat_pid(life)
    assert os.stat(f"/proc/{pid}").st_uid == life.uid
    logs = life.box.hostctl("logs", "life", "-n", "1000").stdout
    assert f"worker-started-as-{life.uid}" in logs, "the worker's output is in the app's log"
    shown = json.loads(life.box.hostctl("status", "life", "--json", "--cpu-interval", "0").stdout)
    assert shown["apps"][0]["background"]["workers"] == {"beat": pid}
    assert shown["apps"][0]["background"]["cron"][0]["schedule"] == "* * * * *"
    cgroup = Path(f"/proc/{pid}/cgroup").read_text()
    for controller in CONTROLLERS:
        assert f":{controller}:/{life.parent}/life\n" in cgroup
    life.box.hostctl("restart", "life")
    wait_for(lambda: _beat_pid(life) != pid and not os.path.exists(f"/proc/{pid}"), timeout=60,
             what="the worker to be replaced")
    pid = _beat_pid(life)
    life.as_customer("touch", str(life.appdir / "reload.touch"))
    wait_for(lambda: _beat_pid(life) != pid, timeout=60, what="the worker to restart on the customer's trigger")


def test_cron_job_fires_as_the_customer_in_its_cgroup(life: Life) -> None:
    out = life.appdir / "cron.out"
    text = wait_for(lambda: out.exists() and len(out.read_text().splitlines()) > 2 and out.read_text(),
                    timeout=90, interval=1, what="the minutely cron job")
    lines = text.splitlines()
    assert lines[0] == str(life.uid) and lines[1] == str(life.appdir)
    assert f":memory:/{life.parent}/life" in text


def test_removing_the_customer_stops_its_workers(life: Life) -> None:
    pid = _beat_pid(life)
    (life.box.inventory / "customers" / "life.yaml").unlink()
    life.box.hostctl("apply")
    wait_for(lambda: not os.path.exists(f"/proc/{pid}"), timeout=60, what="the worker to stop")
    gone = subprocess.run(["pgrep", "-u", life.user], capture_output=True, text=True)
    wait_for(lambda: subprocess.run(["pgrep", "-u", life.user], capture_output=True).returncode == 1,
             timeout=60, what=f"no process of the customer left ({gone.stdout.split()})")


def test_run_joins_the_customers_cgroup_v2_leaf() -> None:
    """The agent's `run` on the v2 hierarchy (this host's cgroup2 mount has no controllers, so only the attach
    is shown): the command runs in <v2>/<parent>/<customer>, as the customer."""
    from hostctl.engine import appagent

    v2 = _v2_root()
    if v2 is None or os.geteuid() != 0:
        pytest.skip("needs root and a writable cgroup2 mount")
    parent = f"hostctl-test-{secrets.token_hex(3)}"
    leaf = Path(v2, parent, "acme")
    leaf.mkdir(parents=True)
    tmp_path = Path(tempfile.mkdtemp(prefix="hostctl-test-", dir="/tmp"))  # nobody can enter it
    try:
        os.chmod(tmp_path, 0o777)
        req = {"op": "run", "customer": "acme", "user": "nobody", "env": {"X": "y"}, "workdir": str(tmp_path), "venv": None,
               "cgroup": {"mode": "v2", "parent": parent, "required": True},
               "argv": ["sh", "-c", "id -u > out; cat /proc/self/cgroup >> out; echo $X >> out"]}
        status, _ = appagent.handle(req)
        assert status == 0
        lines = (tmp_path / "out").read_text().splitlines()
        assert lines[0] == str(pwd.getpwnam("nobody").pw_uid)
        assert f"0::/{parent}/acme" in lines and lines[-1] == "y"
    finally:
        wait_for(lambda: not (leaf / "cgroup.procs").read_text().split(), timeout=10, what="the leaf to empty")
        leaf.rmdir()
        leaf.parent.rmdir()
        shutil.rmtree(tmp_path, ignore_errors=True)
