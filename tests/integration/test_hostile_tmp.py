"""A private /tmp per customer, also when the apps' and hostctl's directories lie under /tmp.

One real Emperor and nginx in a sandbox under /tmp (as every test sandbox is, and as
an operator's layout may be), two customers with their own Unix users: acme with two
apps (they may share a /tmp), globex with one. What acme's app writes to /tmp,
globex's app can neither see nor replace, and the host's /tmp gets none of it; each
app still reaches its own code, sockets and logs under /tmp.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from tests.harness import APPS, Sandbox, Server

pytestmark = pytest.mark.integration


class Tmp:
    def __init__(self) -> None:
        tag = secrets.token_hex(3)
        self.users = {"acme": f"hca{tag}", "globex": f"hcb{tag}"}
        self.box = Sandbox({"isolation": {"users": "per-customer"}})  # under /tmp
        shutil.copy(APPS / "hostile.py", self.box.apps / "hostile.py")
        self.host_canary = Path(f"/tmp/hostctl-host-tmp-{tag}")
        self.server: Server | None = None

    def write(self) -> None:
        def app(name: str, domain: str) -> dict:
            return {"domains": [domain], "wsgi": str(self.box.apps / "hostile.py"), "env": {"CUSTOMER": name}}
        self.box.write_customer("acme", {"user": self.users["acme"], "apps": {
            "web": app("acme", "acme.test"), "api": app("acme", "api.acme.test")}})
        self.box.write_customer("globex", {"user": self.users["globex"], "apps": {"web": app("globex", "globex.test")}})

    def tmp(self, domain: str, write: str = "") -> dict:
        assert self.server is not None
        status, body = self.server.request(domain, f"/tmp?write={write}" if write else "/tmp", timeout=20)
        assert status == 200, (domain, status, body[:300])
        return json.loads(body)["tmp"]

    def teardown(self) -> None:
        try:
            if self.server is not None:
                self.server.stop()
        finally:
            for user in self.users.values():
                subprocess.run(["pkill", "-KILL", "-u", user], capture_output=True)
                subprocess.run(["userdel", user], capture_output=True)
            self.host_canary.unlink(missing_ok=True)
            self.box.cleanup()


@pytest.fixture(scope="module")
def tmp() -> Iterator[Tmp]:
    if os.geteuid() != 0:
        pytest.skip("needs root (creates users, runs the Emperor as root)")
    setup = Tmp()
    try:
        setup.write()
        setup.box.hostctl("apply", "--create-users")
        setup.server = Server(setup.box)
        for domain in ("acme.test", "api.acme.test", "globex.test"):
            setup.server.wait_json(domain, timeout=60)
        yield setup
    finally:
        setup.teardown()


def test_customers_never_share_tmp_even_with_their_directories_under_tmp(tmp: Tmp) -> None:
    tmp.host_canary.write_text("the host's /tmp\n")
    name = f"acme-secret-{secrets.token_hex(3)}"
    acme = tmp.tmp("acme.test", write=name)
    assert name in acme["entries"]
    globex = tmp.tmp("globex.test")
    print("globex's /tmp:", len(globex["entries"]), "entries:", globex["entries"][:20])
    assert name not in globex["entries"], (f"globex sees acme's /tmp file {name} (globex's /tmp has "
                                           f"{len(globex['entries'])} entries, the host's own among them)")
    assert tmp.host_canary.name not in acme["entries"] + globex["entries"], "an app sees the host's /tmp"
    assert not Path("/tmp", name).exists(), "acme's file reached the host's /tmp"
    # globex writes the same name: its own file, acme's stays acme's
    tmp.tmp("globex.test", write=name)
    assert tmp.tmp("api.acme.test")["entries"].count(name) == 1
    # acme's two apps share the customer's /tmp
    assert name in tmp.tmp("api.acme.test")["entries"], "acme's apps do not share acme's /tmp"


def test_the_private_tmp_keeps_the_apps_directories_under_tmp(tmp: Tmp) -> None:
    vassal = (tmp.box.path("vassals") / "acme_web.ini").read_text()
    assert "unshare = mount" in vassal, vassal
    top = tmp.box.root.relative_to("/tmp").parts[0]
    acme = tmp.tmp("acme.test")
    assert top in acme["entries"], f"the sandbox {tmp.box.root} (under /tmp) is not reachable: {acme['entries']}"
    # the customer cannot remove or replace the directory its own code is reached through
    found = subprocess.run(["nsenter", "-t", str(_vassal_pid(tmp, "acme_web")), "-m", "--", "runuser", "-u",
                            tmp.users["acme"], "--", "sh", "-c",
                            f"mv /tmp/{top} /tmp/moved; echo mv=$?; rmdir /tmp/{top}; echo rmdir=$?"],
                           capture_output=True, text=True, timeout=30)
    assert "mv=" in found.stdout and "mv=0" not in found.stdout and "rmdir=0" not in found.stdout, found
    assert top in tmp.tmp("acme.test")["entries"]


def _vassal_pid(tmp: Tmp, vassal: str) -> int:
    """The pid of a vassal's worker (the app's own process, inside the vassal's mount namespace)."""
    assert tmp.server is not None
    status, body = tmp.server.request("acme.test", "/", timeout=20)
    return int(json.loads(body)["pid"])
