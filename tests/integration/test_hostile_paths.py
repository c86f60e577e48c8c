"""Hostile tenant, class 1: no root process follows a symlink a customer planted.

A real Emperor and nginx serve two customers, each as its own Unix user. The
customer "acme" runs code as its user that replaces every file a root process
opens for it (the uWSGI log named in its vassal, nginx's access and error logs
named in its server block, the on-demand socket the Emperor binds, the files
`hostctl logs` reads) by a symlink to a throw-away root-owned canary; then the
root action is triggered: acme's master dies and the Emperor respawns it (as
root), a neighbour's apply reloads nginx, the Emperor binds the socket again,
the operator runs `hostctl logs`. The canary's content, owner and mode must be
unchanged. The paths are read from the live vassal and server block, so the
test asks "wherever root opens it", not "where the layout says".
"""

from __future__ import annotations

import os
import pwd
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import psutil
import pytest

from hostctl.engine import emperor
from tests.harness import wait_for
from tests.hostile import Tenants, as_user, ini_values, plant_fifo, plant_symlink, tenants_running

pytestmark = pytest.mark.integration


@pytest.fixture
def tenants() -> Iterator[Tenants]:
    yield from tenants_running()


def _master_of(worker: int) -> int:
    return psutil.Process(worker).ppid()


KILL_SELF = "import os, signal, sys; os.kill(int(sys.argv[1]), signal.SIGKILL); print('killed')"


def test_uwsgi_log_symlink_is_not_followed_when_the_emperor_respawns_the_vassal(tenants: Tenants) -> None:
    worker = tenants.server.get_json("acme.example")["pid"]  # type: ignore[union-attr]
    master = _master_of(worker)
    logs = tenants.uwsgi_logs()
    assert logs, "the vassal names no log file"
    planted = [path for path in logs if plant_symlink(tenants.user, tenants.canary.path, path)]
    # The customer's own code kills its master (it runs as the customer): the Emperor starts a new one, as root.
    killed = as_user(tenants.user, KILL_SELF, str(master))
    assert "killed" in killed.stdout, killed
    emperor_log = tenants.box.path("log") / "emperor.log"
    before = emperor_log.read_text()

    def settled() -> bool:  # the canary was hit, or the new master came up (or gave up) without hitting it
        if tenants.canary.touched():
            return True
        respawned = [p for p in psutil.process_iter(["cmdline", "status"])
                     if "acme_web.ini" in (p.info["cmdline"] or []) and p.pid != master and p.info["status"] != psutil.STATUS_ZOMBIE]
        status, _ = tenants.server.request("acme.example")  # type: ignore[union-attr]
        return (status == 200 and bool(respawned)) or len(emperor_log.read_text()) > len(before) + 200

    wait_for(settled, timeout=60, interval=0.2, what="the Emperor to respawn acme's vassal")
    time.sleep(1)  # let the new master finish opening its logs (and, on the old code, chown them)
    tenants.canary.assert_untouched(f"vassal respawn (customer planted symlinks at {planted} of {logs})")


def test_nginx_log_symlinks_are_not_followed_on_reload(tenants: Tenants) -> None:
    logs = tenants.nginx_logs()
    assert len(logs) == 2, logs
    planted = [path for path in logs if plant_symlink(tenants.user, tenants.canary.path, path)]
    # Any customer's apply reloads nginx: its root master reopens every log.
    tenants.write("globex", ["globex.example", "www.globex.example"])
    tenants.box.hostctl("apply")
    tenants.server.wait_json("www.globex.example", timeout=30)  # type: ignore[union-attr]
    # A request logs a line to acme's access log, a missing static file an error to its error log.
    assert tenants.server.request("acme.example")[0] == 200  # type: ignore[union-attr]
    assert tenants.server.request("acme.example", "/static/missing-" + secrets.token_hex(4))[0] == 404  # type: ignore[union-attr]
    time.sleep(0.5)
    tenants.canary.assert_untouched(f"nginx reload (customer planted symlinks at {planted} of {logs})")


def test_logs_command_does_not_follow_a_customer_symlink_or_hang_on_a_fifo(tenants: Tenants) -> None:
    tenants.server.get_json("acme.example")  # type: ignore[union-attr]
    files = tenants.uwsgi_logs() + tenants.nginx_logs()
    planted = [path for path in files if plant_symlink(tenants.user, tenants.canary.path, path)]
    for args in (("logs", "acme", "-n", "50"), ("logs", "acme", "--nginx", "-n", "50")):
        out = tenants.box.hostctl(*args, check=False, timeout=60)
        assert tenants.canary.secret not in out.stdout + out.stderr, \
            f"`hostctl {' '.join(args)}` (root) printed the canary through the symlinks planted at {planted}"
    tenants.canary.assert_untouched("hostctl logs")
    # A FIFO where hostctl logs reads must not block it (an open of a FIFO waits for a writer).
    fifos = [path for path in tenants.uwsgi_logs() if plant_fifo(tenants.user, path)]
    if fifos:
        try:
            out = tenants.box.hostctl("logs", "acme", "-n", "5", check=False, timeout=30)
        except subprocess.TimeoutExpired:
            pytest.fail(f"`hostctl logs` hung on the FIFO the customer planted at {fifos}")
        assert out.returncode != 0 or "not a regular file" in out.stdout + out.stderr or out.stdout == "", out


RACE = r"""
import os, sys, time
target, path, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
tmp = path + ".race"
deadline = time.monotonic() + seconds
n = 0
while time.monotonic() < deadline:
    try:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        os.symlink(target, tmp)
        os.replace(tmp, path)
        n += 1
    except OSError as exc:
        print("refused", exc, flush=True)
        sys.exit(0)
print("raced", n, flush=True)
"""


@pytest.fixture
def on_demand_tenants() -> Iterator[Tenants]:
    yield from tenants_running({"on_demand": True, "idle": 2})


def test_on_demand_socket_is_bound_and_chmodded_where_the_customer_cannot_plant(on_demand_tenants: Tenants) -> None:
    """The Emperor (root) unlinks, binds and then chmods the on-demand socket by path: the customer races a symlink in."""
    t = on_demand_tenants
    vassal = t.box.path("vassals") / "acme_web.ini"
    socket_path = Path(str(vassal) + ".socket").read_text().strip()
    t.server.wait_json("acme.example", timeout=30)  # type: ignore[union-attr]
    can_plant = plant_symlink(t.user, t.canary.path, socket_path)
    # The customer keeps swapping a symlink in while the Emperor binds the socket again, which it
    # does whenever it (re)adds the vassal: here the operator switches the app off and on again.
    racer = subprocess.Popen(["runuser", "-u", t.user, "--", sys.executable, "-c", RACE, str(t.canary.path), socket_path, "90"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stats = str(t.box.path("run") / "emperor.stats")
    try:
        deadline = time.monotonic() + 30
        rounds = 0
        while time.monotonic() < deadline and not t.canary.touched() and racer.poll() is None:
            t.write("acme", ["acme.example"], static={"/static/": str(t.box.root / "static")})
            t.box.hostctl("apply")
            t.write("acme", ["acme.example"], static={"/static/": str(t.box.root / "static")}, on_demand=True, idle=2)
            t.box.hostctl("apply")
            for _ in range(50):  # a failed bind is retried at every scan; reading the stats makes it scan
                emperor.poke(stats)
                if t.canary.touched():
                    break
            rounds += 1
    finally:
        if racer.poll() is None:
            for proc in psutil.Process(racer.pid).children(recursive=True):
                proc.kill()
            racer.kill()
        out, err = racer.communicate(timeout=30)
    t.canary.assert_untouched(f"on-demand rebind ({rounds} rounds; customer could plant at {socket_path}: {can_plant}; racer: {out.strip()} {err.strip()})")
    assert not can_plant, f"the customer can replace the on-demand socket {socket_path} that the Emperor (root) binds and chmods"


def test_upgrade_takes_back_a_log_directory_the_customer_owned(tenants: Tenants) -> None:
    """An installation from before the security model: the customer owned log_dir/acme and planted links there."""
    log_dir = tenants.box.path("log") / "acme"
    uid = pwd.getpwnam(tenants.user).pw_uid
    os.chown(log_dir, uid, uid)  # what the old layout did
    logs = tenants.nginx_logs()
    planted = [path for path in logs if plant_symlink(tenants.user, tenants.canary.path, path)]
    assert planted == logs, "the old layout let the customer plant in its log directory"
    applied = tenants.box.hostctl("apply")
    assert f"{log_dir}: taken over by root from uid {uid}" in applied.stdout, applied.stdout
    st = os.lstat(log_dir)
    assert (st.st_uid, oct(st.st_mode & 0o7777)) == (0, "0o750")
    assert not any(os.path.islink(path) for path in logs)
    # nginx reloads (a neighbour's change) and logs a request: the canary stays as it was.
    tenants.write("globex", ["globex.example", "www.globex.example"])
    tenants.box.hostctl("apply")
    tenants.server.wait_json("www.globex.example", timeout=30)  # type: ignore[union-attr]
    assert tenants.server.request("acme.example")[0] == 200  # type: ignore[union-attr]
    tenants.canary.assert_untouched("nginx reload after the upgrade")
    assert not plant_symlink(tenants.user, tenants.canary.path, logs[0]), "the customer can still plant in its old log directory"


def test_accounts_are_made_in_the_customer_range_and_no_customer_gets_anothers_or_nginxs(tenants: Tenants) -> None:
    """Class 2: `user:` may only name an account hostctl may give to a customer (README: Security model)."""
    for user in tenants.users.values():
        assert 20000 <= pwd.getpwnam(user).pw_uid <= 29999, "apply --create-users makes customers in isolation.uid_min..uid_max"
    app = tenants.box.echo_app(["evil.example"])
    for user, why in ((tenants.user, "customer 'acme'"), ("www-data", "is nginx's user"),
                      ("root", "is root"), ("daemon", "outside isolation.uid_min..uid_max")):
        tenants.box.write_customer("evil", {"user": user, "apps": {"web": app}})
        out = tenants.box.hostctl("apply", check=False)
        assert out.returncode == 1 and f"customers/evil.yaml:1: user: Unix user {user!r}" in out.stderr and why in out.stderr, out
        assert not (tenants.box.path("vassals") / "evil_web.ini").exists()
        assert not (tenants.box.path("nginx") / "evil_web.conf").exists()
    tenants.server.wait_json("acme.example")  # type: ignore[union-attr]


def test_status_does_not_connect_through_a_customers_stats_symlink(tenants: Tenants) -> None:
    """Root's `status` reads each vassal's stats socket in its customer's own directory: a symlink there
    (here to the neighbour's stats socket) must not make it read, and report, another server."""
    import json

    for _ in range(5):
        tenants.server.get_json("globex.example")  # type: ignore[union-attr]
    run = tenants.box.path("run")
    stats = ini_values(tenants.vassal(), "stats")[0]
    neighbour = str(run / "globex" / "web.stats")
    assert plant_symlink(tenants.user, neighbour, stats), "the customer owns its socket directory"
    out = tenants.box.hostctl("status", "--json", "--cpu-interval", "0", check=False)
    rows = {row["customer"]: row for row in json.loads(out.stdout)["apps"]}
    print(rows["acme"])
    assert rows["acme"]["requests"] != rows["globex"]["requests"], \
        f"root read globex's stats through acme's symlink: {rows['acme']}"
    assert rows["globex"]["state"] == "running"


def test_limits_apply_at_boot_recreates_the_directories_a_tmpfs_run_dir_loses(tenants: Tenants) -> None:
    """`limits --apply` runs before the Emperor at boot: run_dir/<c>/ and run_dir/ondemand/ come back with layout's owners."""
    import shutil
    import stat

    run = tenants.box.path("run")
    uid = pwd.getpwnam(tenants.user).pw_uid
    worker = tenants.server.get_json("acme.example")["pid"]  # type: ignore[union-attr]
    for name in ("acme", "ondemand"):
        shutil.rmtree(run / name)  # what a reboot does to a tmpfs
    tenants.box.hostctl("limits", "--apply")
    acme, ondemand = os.lstat(run / "acme"), os.lstat(run / "ondemand")
    www = pwd.getpwnam("www-data").pw_gid
    assert (acme.st_uid, acme.st_gid, stat.S_IMODE(acme.st_mode)) == (uid, www, 0o2750)
    assert (ondemand.st_uid, ondemand.st_gid, stat.S_IMODE(ondemand.st_mode)) == (0, www, 0o750)
    # the app comes back: its next master (here: the customer killed the old one) binds in the recreated directory
    assert "killed" in as_user(tenants.user, KILL_SELF, str(_master_of(worker))).stdout
    tenants.server.wait_json("acme.example", lambda d: d["pid"] != worker, timeout=60)  # type: ignore[union-attr]
