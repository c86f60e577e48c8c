"""Hostile tenants, item 6 (issue 11): root reads nothing of a customer's without bounds.

One real Emperor and nginx serve two customers, each as its own Unix user ("good" and
"evil", made by `apply --create-users`, removed at teardown). Everything the attacks
plant is planted by code running as evil's user: its virtualenv's pyvenv.cfg becomes
a FIFO, then a symlink to /dev/zero; its certificate becomes a FIFO; a program of its
own takes its stats socket's path and trickles forever, floods 100 MB, nests JSON
100,000 deep or never answers; its app answers the post-apply probe with a body that
never ends. Each time `apply` (with a change of good's in the same run) and `status`
must return, name evil and its reason, and serve good as usual. Subprocess timeouts
are generous bounds that turn a hang (the old code) into a failure, not timings.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from tests.harness import APPS, Sandbox, Server, require_root, tear_down, wait_for

pytestmark = pytest.mark.integration

HANG = 90  # seconds: far beyond a bounded run, so only a hang reaches it

STATS_SERVER = r"""
import os, socket, sys, time
path, mode = sys.argv[1], sys.argv[2]
try:
    os.unlink(path)
except FileNotFoundError:
    pass
server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind(path)
os.chmod(path, 0o666)
server.listen(16)
print("ready", flush=True)
while True:
    conn, _ = server.accept()
    try:
        if mode == "trickle":
            conn.sendall(b'{"pid": 1, "x": "')
            while True:
                conn.sendall(b"a")
                time.sleep(0.05)
        elif mode == "flood":
            chunk = b" " * (1 << 20)
            for _ in range(100):
                conn.sendall(chunk)
        elif mode == "deep":
            conn.sendall(b'{"a":' + b"[" * 100000 + b"]" * 100000 + b"}")
        elif mode == "silent":
            time.sleep(3600)
    except OSError:
        pass
    conn.close()
"""


class Tenants:
    def __init__(self) -> None:
        tag = secrets.token_hex(3)
        self.users = {"good": f"hcg{tag}", "evil": f"hce{tag}"}
        self.box = Sandbox({"isolation": {"users": "per-customer"}})
        shutil.copy(APPS / "hostile.py", self.box.apps / "hostile.py")
        self.evil_home = self.box.path("evil-home")  # what evil's user owns: its virtualenv, its certificate
        self.server: Server | None = None
        self.planted: list[subprocess.Popen] = []

    def write(self, evil_extra: dict | None = None, greeting: str = "g1") -> None:
        self.box.write_customer("good", {"user": self.users["good"], "apps": {"web": self.box.echo_app(
            ["good.test"], env={"CUSTOMER": "good", "GREETING": greeting})}})
        app = {"domains": ["evil.test"], "wsgi": str(self.box.apps / "hostile.py"), "env": {"CUSTOMER": "evil"},
               "virtualenv": str(self.evil_home / "venv"), "harakiri": 0}
        app.update(evil_extra or {})
        self.box.write_customer("evil", {"user": self.users["evil"], "apps": {"web": app}})

    def as_evil(self, *argv: str, **kw) -> subprocess.CompletedProcess:
        return subprocess.run(["runuser", "-u", self.users["evil"], "--", *argv], check=True, capture_output=True, text=True, **kw)

    def plant_stats_server(self, mode: str) -> None:
        """evil's own program at evil's stats socket path (evil owns run/evil/)."""
        path = str(self.box.path("run") / "evil" / "web.stats")
        proc = subprocess.Popen(["runuser", "-u", self.users["evil"], "--", "/usr/bin/python3", "-c", STATS_SERVER, path, mode],
                                stdout=subprocess.PIPE, text=True, start_new_session=True)
        self.planted.append(proc)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"

    def stop_planted(self) -> None:
        for proc in self.planted:
            if proc.poll() is None:
                os.killpg(proc.pid, 9)
            proc.wait()
        self.planted.clear()

    def hostctl(self, *args: str) -> subprocess.CompletedProcess:
        try:
            return self.box.hostctl(*args, check=False, timeout=HANG)
        except subprocess.TimeoutExpired:
            pytest.fail(f"`hostctl {' '.join(args)}` did not return within {HANG} s: one customer's garbage hangs it for everyone")

    def status(self) -> dict:
        shown = self.hostctl("status", "--json")
        return {f"{a['customer']}_{a['app']}": a for a in json.loads(shown.stdout)["apps"]}

    def teardown(self) -> None:
        tear_down(self.box, self.server, self.users.values(), first=self.stop_planted)


@pytest.fixture(scope="module")
def tenants() -> Iterator[Tenants]:
    require_root("creates users")
    t = Tenants()
    try:
        t.evil_home.mkdir()
        subprocess.run(["/usr/bin/python3", "-m", "venv", "--without-pip", str(t.evil_home / "venv")], check=True)
        t.write()
        t.box.hostctl("apply", "--create-users")
        subprocess.run(["chown", "-R", f"{t.users['evil']}:", str(t.evil_home)], check=True)  # the customer's own files
        t.server = Server(t.box)
        t.server.wait_json("good.test")
        t.server.wait_json("evil.test")
        yield t
    finally:
        t.teardown()


def _good_changed_and_evil_named(t: Tenants, greeting: str, field: str, reason: str, evil_extra: dict | None = None) -> None:
    t.write(evil_extra, greeting=greeting)
    applied = t.hostctl("apply")
    said = applied.stdout + applied.stderr
    assert applied.returncode == 1, said
    assert f"customers/evil.yaml:" in said and field in said and reason in said, said
    assert t.server.wait_json("good.test", lambda d: d["greeting"] == greeting)["customer"] == "good"  # type: ignore[union-attr]


@pytest.mark.parametrize("plant, reason", [
    ("fifo", "pyvenv.cfg' is a FIFO, not a regular file"),
    ("zero", "pyvenv.cfg' is a symbolic link, not a regular file"),
])
def test_a_hostile_pyvenv_cfg_holds_back_only_its_customer(tenants: Tenants, plant: str, reason: str) -> None:
    """Old code: open() of evil's FIFO pyvenv.cfg blocked apply forever (and /dev/zero was read without end)."""
    cfg = str(tenants.evil_home / "venv" / "pyvenv.cfg")
    original = Path(cfg).read_text()
    tenants.as_evil("rm", cfg)
    tenants.as_evil(*(["mkfifo", cfg] if plant == "fifo" else ["ln", "-s", "/dev/zero", cfg]))
    try:
        _good_changed_and_evil_named(tenants, f"pyvenv-{plant}", "apps.web.virtualenv", reason)
        assert tenants.server.get_json("evil.test")["customer"] == "evil"  # its last-known-good vassal still serves
    finally:
        tenants.as_evil("rm", cfg)
        tenants.as_evil("/usr/bin/python3", "-c", f"open({cfg!r}, 'w').write({original!r})")


def test_a_certificate_that_is_a_fifo_holds_back_only_its_customer(tenants: Tenants) -> None:
    """Old code: reading evil's certificate (a FIFO in evil's directory) blocked apply forever."""
    cert, key = tenants.evil_home / "cert.pem", tenants.evil_home / "key.pem"
    tenants.as_evil("mkfifo", str(cert), str(key))
    try:
        _good_changed_and_evil_named(tenants, "cert-fifo", "apps.web.tls.certificate", "cert.pem' cannot be read (is a FIFO, not a regular file)",
                                     {"tls": {"certificate": str(cert), "key": str(key)}})
    finally:
        tenants.as_evil("rm", str(cert), str(key))
        tenants.write(greeting="cert-fifo")
        tenants.hostctl("apply")


@pytest.mark.parametrize("mode, reason", [
    ("trickle", "did not answer within 1 s"),
    ("flood", f"sent more than {4 << 20} bytes"),
    ("deep", "answered JSON nested deeper than 32 levels"),
    ("silent", "did not answer within 1 s"),
])
def test_a_hostile_stats_socket_makes_only_its_app_unreadable(tenants: Tenants, mode: str, reason: str) -> None:
    """Old code: a trickling socket held `status` forever (a per-recv timeout never fires), and 100,000 levels
    of JSON crashed it with a RecursionError for everyone."""
    tenants.plant_stats_server(mode)
    try:
        rows = tenants.status()
        assert rows["good_web"]["state"] != "unknown" and rows["good_web"]["problems"] == [], rows["good_web"]
        assert any(reason in p for p in rows["evil_web"]["problems"]), rows["evil_web"]
        assert tenants.server.get_json("good.test")["customer"] == "good"  # type: ignore[union-attr]
    finally:
        tenants.stop_planted()


def test_a_probe_answered_with_an_endless_body_does_not_hang_apply(tenants: Tenants) -> None:
    """Old code: the probe read the whole body of evil's endless /stream (harakiri off) and apply never returned."""
    tenants.write({"probe": {"path": "/stream", "status": 200, "timeout": 10}, "env": {"CUSTOMER": "evil", "T": "probe"}},
                  greeting="probe")
    applied = tenants.hostctl("apply")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert tenants.server.wait_json("good.test", lambda d: d["greeting"] == "probe")["customer"] == "good"  # type: ignore[union-attr]
    wait_for(lambda: tenants.server.get_json("evil.test")["customer"] == "evil", what="evil to answer")  # type: ignore[union-attr]
