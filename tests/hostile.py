"""Helpers for the hostile-tenant tests: act as a customer's Unix user, and canaries that must stay untouched.

A ``Canary`` is a throw-away root-owned file in a root-only directory (never a real
system file). A customer plants symlinks to it wherever root will open, create,
chown or chmod; after the root action, the canary's content, owner and mode must
be what they were.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import stat
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import yaml

from tests.harness import Sandbox, Server, require_root, tear_down

# Run as the customer: replace PATH by a symlink to TARGET (atomically, the way an attacker would).
PLANT_SYMLINK = r"""
import os, sys
target, path = sys.argv[1], sys.argv[2]
tmp = path + ".plant"
try:
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass
    os.symlink(target, tmp)
    os.replace(tmp, path)
    print("planted")
except OSError as exc:
    print("refused", exc)
"""

PLANT_FIFO = r"""
import os, sys
path = sys.argv[1]
try:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    os.mkfifo(path, 0o644)
    print("planted")
except OSError as exc:
    print("refused", exc)
"""


@dataclass(frozen=True)
class Mark:
    content: bytes
    uid: int
    gid: int
    mode: int


class Canary:
    """A root-owned 0600 file in a root-only 0700 directory, with random content."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="hostile-canary-"))
        os.chmod(self.dir, 0o700)
        self.path = self.dir / "canary"
        self.secret = "CANARY-" + secrets.token_hex(8)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(self.secret + "\n")
        os.chmod(self.path, 0o600)
        self.original = self.mark()

    def mark(self) -> Mark:
        st = os.lstat(self.path)
        return Mark(self.path.read_bytes(), st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode))

    def touched(self) -> bool:
        return self.mark() != self.original

    def assert_untouched(self, what: str) -> None:
        now = self.mark()
        assert now == self.original, (f"{what}: root wrote, chowned or chmodded the canary through a customer's symlink: "
                                      f"was {self.original}, now {now}")

    def cleanup(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def as_user(user: str, code: str, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    """Run Python ``code`` as the Unix user ``user`` (the customer's own code)."""
    return subprocess.run(["runuser", "-u", user, "--", sys.executable, "-c", code, *args],
                          capture_output=True, text=True, timeout=timeout)


def plant_symlink(user: str, target: str | os.PathLike, path: str) -> bool:
    """As ``user``, replace ``path`` by a symlink to ``target``; True when the customer could."""
    out = as_user(user, PLANT_SYMLINK, str(target), path)
    return out.stdout.startswith("planted")


def plant_fifo(user: str, path: str) -> bool:
    out = as_user(user, PLANT_FIFO, path)
    return out.stdout.startswith("planted")


def ini_values(text: str, *keys: str) -> list[str]:
    """Values of ``key = value`` lines of a vassal ini (the live file names the paths root opens)."""
    out = []
    for line in text.splitlines():
        m = re.match(r"^\s*([a-z0-9-]+)\s*=\s*(.*?)\s*$", line)
        if m and m.group(1) in keys:
            out.append(m.group(2))
    return out


def nginx_values(text: str, *keys: str) -> list[str]:
    """First arguments of ``key arg ...;`` directives of a server block."""
    out = []
    for line in text.splitlines():
        parts = line.split("#", 1)[0].strip().rstrip(";").split()
        if len(parts) >= 2 and parts[0] in keys:
            out.append(parts[1])
    return sorted(set(out))


class Tenants:
    """Two customers with their own Unix users, served by a real Emperor and nginx."""

    def __init__(self, acme_app: dict | None = None) -> None:
        tag = secrets.token_hex(3)
        self.users = {"acme": f"hct-h{tag}", "globex": f"hct-g{tag}"}
        self.box = Sandbox({"isolation": {"users": "per-customer"}})
        # a static target must lie under the app's chdir or an isolation.static_roots entry
        self.box.write_settings({**yaml.safe_load((self.box.inventory / "hostctl.yaml").read_text()),
                                 "isolation": {"users": "per-customer", "static_roots": [str(self.box.root)]}})
        (self.box.root / "static").mkdir()
        os.chmod(self.box.root / "static", 0o755)
        self.acme_app = acme_app or {}
        self.server: Server | None = None
        self.canary = Canary()

    def write(self, name: str, domains: list[str], **extra) -> None:
        app = self.box.echo_app(domains, env={"CUSTOMER": name}, **extra)
        self.box.write_customer(name, {"user": self.users[name], "apps": {"web": app}})

    def start(self) -> None:
        self.write("acme", ["acme.example"], static={"/static/": str(self.box.root / "static")}, **self.acme_app)
        self.write("globex", ["globex.example"])
        self.box.hostctl("apply", "--create-users")
        self.server = Server(self.box)
        if not self.acme_app.get("on_demand"):
            self.server.wait_json("acme.example", timeout=30)
        self.server.wait_json("globex.example", timeout=30)

    @property
    def user(self) -> str:
        return self.users["acme"]

    def vassal(self) -> str:
        return (self.box.path("vassals") / "acme_web.ini").read_text()

    def server_block(self) -> str:
        return (self.box.path("nginx") / "acme_web.conf").read_text()

    def uwsgi_logs(self) -> list[str]:
        return ini_values(self.vassal(), "logto", "logto2", "logfile")

    def nginx_logs(self) -> list[str]:
        return nginx_values(self.server_block(), "access_log", "error_log")

    def teardown(self) -> None:
        tear_down(self.box, self.server, self.users.values(), last=self.canary.cleanup)


def tenants_running(acme_app: dict | None = None) -> Iterator[Tenants]:
    require_root("creates users; the attacks need a root Emperor and nginx")
    setup = Tenants(acme_app)
    try:
        setup.start()
        yield setup
    finally:
        setup.teardown()
