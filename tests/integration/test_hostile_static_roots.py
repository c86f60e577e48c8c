"""Hostile tenants, item 4 (issue 11): static targets only under the app's own roots, and nginx can reach them.

Real Emperor and nginx, two customers with their own Unix users. "victim" has a
canary file that nginx's user can read (as a customer's code often is). "evil",
as its own user, plants symlinks in its static directory: one to the victim's
canary, one to a file of its own. nginx must refuse the first (403) and serve the
second. A static target outside the app's chdir is refused by validation, and a
static directory nginx's workers cannot enter is named before it answers 403.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from tests.harness import APPS, Sandbox, Server, require_root, tear_down

pytestmark = pytest.mark.integration


class Static:
    def __init__(self) -> None:
        tag = secrets.token_hex(3)
        self.users = {"victim": f"hcv{tag}", "evil": f"hcs{tag}"}
        self.box = Sandbox({"isolation": {"users": "per-customer"}})
        shutil.copy(APPS / "hostile.py", self.box.apps / "hostile.py")
        self.homes = {name: self.box.path(f"{name}-home") for name in self.users}
        self.canary = f"CANARY-{secrets.token_hex(8)}"
        self.server: Server | None = None

    def write(self, evil_static: dict[str, str] | None = None) -> None:
        for name in self.users:
            chdir = self.homes[name] / "app"
            app = {"domains": [f"{name}.test"], "wsgi": str(self.box.apps / "hostile.py"), "chdir": str(chdir),
                   "env": {"CUSTOMER": name}, "static": {"/static/": str(chdir / "static")}}
            if name == "evil" and evil_static is not None:
                app["static"] = evil_static
            self.box.write_customer(name, {"user": self.users[name], "apps": {"web": app}})

    def as_evil(self, *argv: str) -> None:
        subprocess.run(["runuser", "-u", self.users["evil"], "--", *argv], check=True, capture_output=True)

    def get(self, path: str, host: str = "evil.test") -> tuple[int, bytes]:
        assert self.server is not None
        return self.server.request(host, path)

    def teardown(self) -> None:
        tear_down(self.box, self.server, self.users.values())


@pytest.fixture(scope="module")
def static() -> Iterator[Static]:
    require_root("creates users")
    s = Static()
    try:
        for name, home in s.homes.items():
            (home / "app" / "static").mkdir(parents=True)
            (home / "app" / "static" / "hello.txt").write_text(f"hello from {name}\n")
        (s.homes["victim"] / "app" / "settings.py").write_text(f"SECRET_KEY = '{s.canary}'\n")
        s.write()
        s.box.hostctl("apply", "--create-users")
        for name, user in s.users.items():
            subprocess.run(["chown", "-R", f"{user}:", str(s.homes[name])], check=True)
        s.server = Server(s.box)
        s.server.wait_json("evil.test")
        yield s
    finally:
        s.teardown()


def test_a_planted_symlink_to_another_customers_file_is_not_followed(static: Static) -> None:
    """Old code: GET /static/leak answered 200 with the victim's SECRET_KEY (the canary)."""
    evil_static = static.homes["evil"] / "app" / "static"
    assert static.get("/static/hello.txt") == (200, b"hello from evil\n")
    static.as_evil("ln", "-s", str(static.homes["victim"] / "app" / "settings.py"), str(evil_static / "leak"))
    static.as_evil("ln", "-s", str(static.homes["victim"] / "app"), str(evil_static / "victim-dir"))
    static.as_evil("ln", "-s", "hello.txt", str(evil_static / "own-link"))
    for path in ("/static/leak", "/static/victim-dir/settings.py"):
        status, body = static.get(path)
        assert static.canary.encode() not in body, f"{path} leaked the victim's file"
        assert status in (403, 404), (path, status)
    assert static.get("/static/own-link") == (200, b"hello from evil\n")  # its own symlinks still work
    assert static.get("/static/hello.txt", "victim.test") == (200, b"hello from victim\n")


def test_a_static_target_outside_the_chdir_holds_back_only_that_customer(static: Static) -> None:
    """Old code: `static: {/loot/: <victim's app>}` was applied and nginx served the victim's code."""
    static.write({"/static/": str(static.homes["evil"] / "app" / "static"), "/loot/": str(static.homes["victim"] / "app")})
    held = static.box.hostctl("apply", check=False)
    assert held.returncode == 1
    assert (f"customers/evil.yaml:12: apps.web.static./loot/: '{static.homes['victim'] / 'app'}' is not under the app's chdir "
            f"({static.homes['evil'] / 'app'})") in held.stdout + held.stderr, held.stdout + held.stderr
    status, body = static.get("/loot/settings.py")
    assert static.canary.encode() not in body  # the app answers it: no /loot/ location went live
    static.write()
    static.box.hostctl("apply")


def test_a_static_directory_nginx_cannot_enter_is_named(static: Static) -> None:
    """Old code: the apply went through and every static file answered 403 (the README advised 0750 homes)."""
    home = static.homes["evil"]
    os.chmod(home, 0o750)
    try:
        static.write({"/static/": str(home / "app" / "static"), "/assets/": str(home / "app" / "static")})
        held = static.box.hostctl("apply", check=False)
        said = held.stdout + held.stderr
        assert held.returncode == 1
        assert (f"customers/evil.yaml:12: apps.web.static./assets/: nginx's workers (www-data) cannot enter '{home}' "
                f"(mode 0750, {static.users['evil']}:{static.users['evil']}), so every file under "
                f"'{home / 'app' / 'static'}' would answer 403") in said, said
    finally:
        os.chmod(home, 0o755)
        static.write()
        static.box.hostctl("apply")
