"""Hostile tenant: the environment a customer asks for never reaches a process that runs as root.

A customer asks the operator for env values (``env:`` in its customer file): a ``PATH``
with its own ``bin`` first is an ordinary request, ``LD_PRELOAD`` a less innocent one.
uWSGI applies ``env =`` lines while it parses the vassal's ini, before the privilege
drop, and its root-phase commands (``exec-as-root``: the open-files limit, on cgroup v2
the cgroup join) run ``/bin/sh -c`` with that environment. So a customer's ``PATH``
chose which ``prlimit`` root ran, and its ``LD_PRELOAD`` ran its library inside root's
shell: at every start by the Emperor (each boot included), before anyone looks.

The customer plants its ``prlimit`` (a script) and a preload library, both writing to
a root-only canary when they run, and asks for ``PATH``/``LD_PRELOAD``. After the
vassal starts, the canary must be untouched, and the app must still see the values it
asked for (also after an env change, which the Emperor applies with a reload).
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from tests.harness import Sandbox, Server
from tests.hostile import Canary
from tests.integration.test_escape_uwsgi import NASTY

pytestmark = pytest.mark.integration

FAKE_PRLIMIT = """#!/bin/sh
# the customer's own prlimit: runs with whoever runs it, then does the real job
echo "customer's prlimit ran as uid $(id -u)" >> {canary}
id -u > {proof}
exec /usr/bin/prlimit "$@"
"""

PRELOAD_C = r"""
#include <stdio.h>
#include <unistd.h>
__attribute__((constructor)) static void customer_code(void) {
    if (geteuid() != 0) return;  /* the customer's own processes: nothing to show */
    FILE *f = fopen("%(canary)s", "a");
    if (f) { fprintf(f, "customer's library ran as uid 0 in pid %%d\n", (int) getpid()); fclose(f); }
    f = fopen("%(proof)s", "w");
    if (f) { fprintf(f, "0\n"); fclose(f); }
}
"""


class Setup:
    def __init__(self) -> None:
        self.user = f"hce{secrets.token_hex(3)}"
        self.box = Sandbox({"isolation": {"users": "per-customer"}})
        self.canary = Canary()
        self.bin = self.box.root / "customer-bin"  # the customer's own directory (its code, its venv)
        self.server: Server | None = None

    def customer(self, env: dict[str, str]) -> None:
        app = self.box.echo_app(["envroot.example"], env={"CUSTOMER": "envroot", **env})
        self.box.write_customer("envroot", {"user": self.user, "apps": {"web": app}})

    def chown_bin(self) -> None:
        for path in [self.bin, *self.bin.iterdir()]:
            shutil.chown(path, self.user, self.user)

    def teardown(self) -> None:
        try:
            if self.server is not None:
                self.server.stop()
        finally:
            subprocess.run(["userdel", self.user], capture_output=True)
            self.box.cleanup()
            self.canary.cleanup()


@pytest.fixture
def setup() -> Iterator[Setup]:
    if os.geteuid() != 0:
        pytest.skip("needs root (a root Emperor starts the vassal; creates a user)")
    s = Setup()
    try:
        yield s
    finally:
        s.teardown()


def _start(s: Setup, env: dict[str, str]) -> dict:
    s.customer(env)
    s.box.hostctl("apply", "--create-users")
    s.chown_bin()
    s.server = Server(s.box)
    return s.server.wait_json("envroot.example", timeout=60)


def test_customer_path_does_not_choose_roots_commands(setup: Setup) -> None:
    s = setup
    s.bin.mkdir(mode=0o755)
    proof = s.bin / "ran-as"
    (s.bin / "prlimit").write_text(FAKE_PRLIMIT.format(canary=s.canary.path, proof=proof))
    os.chmod(s.bin / "prlimit", 0o755)
    path = f"{s.bin}:/usr/local/bin:/usr/bin:/bin"
    nasty = {f"T_{i}": value for i, value in enumerate(NASTY)}  # escaping holds on both ways the env is set
    body = _start(s, {"PATH": path, "T_ASKED": "one", **nasty})
    assert body["uid"] != 0
    s.canary.assert_untouched("the customer's PATH reached root's exec-as-root shell")
    assert not proof.exists() or proof.read_text().strip() != "0", "root ran the customer's prlimit"
    assert body["env"] == {"T_ASKED": "one", **nasty}, body  # the app still gets what it asked for
    # an env change reaches the app through the Emperor's reload (the master re-executes as the customer)
    s.customer({"PATH": path, "T_ASKED": "two", **nasty})
    s.box.hostctl("apply")
    s.server.wait_json("envroot.example", lambda b: b["env"] == {"T_ASKED": "two", **nasty}, timeout=60)
    s.canary.assert_untouched("after the reload")


def test_customer_preload_never_loads_into_root(setup: Setup) -> None:
    s = setup
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler to build the customer's preload library")
    s.bin.mkdir(mode=0o755)
    proof = s.bin / "ran-as"
    source = s.bin / "evil.c"
    source.write_text(PRELOAD_C % {"canary": s.canary.path, "proof": proof})
    subprocess.run([cc, "-shared", "-fPIC", "-o", str(s.bin / "libevil.so"), str(source)], check=True)
    body = _start(s, {"LD_PRELOAD": str(s.bin / "libevil.so"), "T_ASKED": "one"})
    assert body["env"] == {"T_ASKED": "one"}, body
    s.canary.assert_untouched("the customer's LD_PRELOAD was loaded into a root process")
    assert not proof.exists(), "the customer's library ran as root"
