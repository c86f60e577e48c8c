"""A compromised app cannot rewrite its own released code: the release tree is not writable by the app's user.

One customer (its own Unix user, its own cgroup v1 leaf) with one released app
(no requirements: a virtualenv without packages, built in seconds), served by a
real Emperor and nginx. The app's own code, running in the vassal as the
customer, tries what an attacker with code execution in it would do to stay:
append to its module, add a module next to it, plant a ``.pth`` file in its
virtualenv's site-packages (run by every future interpreter start), and create
entries in the app root and in ``releases/`` (through which it could repoint
``current`` or swap a release). Each must fail; the declared writable directory
(``<root>/data``) must stay writable.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from tests.harness import Server, require_cgroup_v1, wait_for
from tests.integration.test_app_life import OneCustomer

pytestmark = pytest.mark.integration

ATTACKER_APP = r'''import glob, json, os, sys

HERE = os.path.dirname(os.path.realpath(__file__))
VERSION = "original"


def attempt(action):
    try:
        action()
        return "written"
    except OSError as exc:
        return f"{type(exc).__name__}: {exc.strerror}"


def append_to_own_module():
    with open(os.path.realpath(__file__), "a") as fh:
        fh.write("\nVERSION = 'persisted'\n")


def add_module():
    with open(os.path.join(HERE, "backdoor.py"), "w") as fh:
        fh.write("print('backdoor')\n")


def plant_pth():
    site = glob.glob(os.path.join(os.path.realpath(sys.prefix), "lib", "python3*", "site-packages"))[0]
    with open(os.path.join(site, "zz-backdoor.pth"), "w") as fh:
        fh.write("import os\n")


def create_in(directory):
    def action():
        with open(os.path.join(directory, ".planted"), "w") as fh:
            fh.write("x")
    return action


def application(environ, start_response):
    root = os.path.dirname(os.path.dirname(HERE))  # <root>/releases/<id> -> <root>
    body = {"version": VERSION, "uid": os.getuid(), "prefix": os.path.realpath(sys.prefix), "here": HERE}
    if environ.get("PATH_INFO") == "/attack":
        body.update(module=attempt(append_to_own_module), new_module=attempt(add_module), pth=attempt(plant_pth),
                    app_root=attempt(create_in(root)), releases=attempt(create_in(os.path.join(root, "releases"))),
                    data=attempt(create_in(os.path.join(root, "data"))))
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(body).encode()]
'''


class Code(OneCustomer):
    def __init__(self) -> None:
        super().__init__("code", "k")
        self.root = self.box.path("srv") / "web"
        self.root.parent.mkdir()
        self.source = self.box.path("source")
        self.source.mkdir()
        (self.source / "app.py").write_text(ATTACKER_APP)

    def get(self, path: str = "/") -> dict:
        assert self.server is not None
        return self.server.get_json("code.test", path)


@pytest.fixture(scope="module")
def code() -> Iterator[Code]:
    require_cgroup_v1()
    setup = Code()
    try:
        setup.box.write_customer("code", {
            "user": setup.user, "limits": {"memory": "256M", "pids": 128},
            "apps": {"web": {"domains": ["code.test"], "wsgi": "app:application", "root": str(setup.root)}},
        })
        setup.box.hostctl("apply", "--create-users")
        setup.server = Server(setup.box)
        out = setup.box.hostctl("release", "code", "--source", str(setup.source), timeout=600)
        assert "is live" in out.stdout, out.stderr
        wait_for(lambda: setup.get()["uid"] == setup.uid, timeout=60, what="the released app to answer as the customer")
        yield setup
    finally:
        setup.teardown()


def test_the_running_app_cannot_rewrite_its_released_code_or_virtualenv(code: Code) -> None:
    release = Path(code.get()["here"])
    module = release / "app.py"
    before = module.read_bytes()
    found = code.get("/attack")
    print("attacks from inside the app:", json.dumps(found))
    attacks = ("module", "new_module", "pth", "app_root", "releases")
    written = [name for name in attacks if found[name] == "written"]
    assert not written, f"the app (uid {found['uid']}) wrote its own code: {written} ({found})"
    for name in attacks:
        assert found[name].startswith("PermissionError"), (name, found[name])
    assert module.read_bytes() == before
    assert not (release / "backdoor.py").exists()
    assert not list(Path(found["prefix"]).glob("lib/python3*/site-packages/zz-backdoor.pth"))
    assert found["data"] == "written", "the declared writable directory <root>/data stays the customer's"
    # The customer's own shell (`hostctl run`) cannot either: the code changes only through a release.
    ran = code.box.hostctl("run", "code", "--", "sh", "-c", "echo x >> app.py; echo x > .venv/pyvenv.cfg", check=False)
    assert ran.returncode != 0 and "Permission denied" in ran.stderr, (ran.returncode, ran.stderr)
    assert module.read_bytes() == before


def test_the_release_tree_is_roots_and_readable_by_the_customer(code: Code) -> None:
    root = code.root
    gid = os.stat(root / "data").st_gid
    for path in (root, root / "releases", root / "venvs", root / "current",
                 root / os.readlink(root / "current") / "app.py"):
        st = os.stat(path, follow_symlinks=False)
        writable = not stat.S_ISLNK(st.st_mode) and st.st_mode & 0o022  # a link's own mode is always 0777
        assert st.st_uid == 0 and not writable, (path, st.st_uid, oct(st.st_mode))
    assert os.stat(root / "data").st_uid == code.uid and gid >= 0
    assert os.stat(root / "reload.touch").st_uid == code.uid, "the customer still pulls its own reload trigger"
    subprocess.run(["runuser", "-u", code.user, "--", "touch", str(root / "reload.touch")], check=True)
    ran = code.box.hostctl("run", "code", "--", "sh", "-c", "cat app.py >/dev/null && ls .venv/bin/python")
    assert ran.returncode == 0, ran.stderr


UPGRADE_PLANT = r"""
import os, sys
root, canary, canary_dir = sys.argv[1:4]
os.chdir(root)
rid = "20260101T000000Z"
os.makedirs(f"releases/{rid}/pkg")
open(f"releases/{rid}/app.py", "w").write("application = None\n")
os.makedirs("venvs/aaaaaaaaaaaaaaaa/lib")
open("venvs/aaaaaaaaaaaaaaaa/.hostctl-complete", "w").write("\n")
os.makedirs("venvs/bbbbbbbbbbbbbbbb")  # half-built: no completion mark
os.symlink(canary, f"releases/{rid}/pkg/settings.py")  # root must not chown or chmod through it
os.symlink(canary_dir, "releases/19990101T000000Z")
os.symlink(canary, "reload.touch")
os.symlink(f"releases/{rid}", "current")
open("db.sqlite3", "w").write("the customer's state\n")
print("planted")
"""


def test_an_app_root_the_customer_owned_is_taken_back_without_following_its_links(code: Code) -> None:
    """Upgrade: an app root from before (the customer's, 2750) with links planted to a root-only canary."""
    from hostctl.engine import appagent
    from tests.hostile import Canary, as_user

    canary = Canary()
    old = code.root.parent / "old"
    try:
        old.mkdir(mode=0o700)
        os.chown(old, code.uid, code.uid)
        os.chmod(old, 0o2750)
        planted = as_user(code.user, UPGRADE_PLANT, str(old), str(canary.path), str(canary.dir))
        assert planted.stdout.startswith("planted"), planted.stderr
        user = appagent.account(code.user)
        appagent.ensure_root(str(old), user, -1)
        canary.assert_untouched("taking back an app root")
        st = os.stat(old)
        assert (st.st_uid, st.st_mode & 0o7777) == (0, 0o751)
        release = old / "releases" / "20260101T000000Z"
        for path in (release, release / "app.py", release / "pkg", release / "pkg" / "settings.py",
                     old / "venvs" / "aaaaaaaaaaaaaaaa" / ".hostctl-complete", old / "current"):
            assert os.stat(path, follow_symlinks=False).st_uid == 0, path
        assert os.readlink(old / "current") == "releases/20260101T000000Z"
        assert not os.path.lexists(old / "releases" / "19990101T000000Z")
        assert not os.path.lexists(old / "venvs" / "bbbbbbbbbbbbbbbb")
        touch = os.stat(old / "reload.touch", follow_symlinks=False)
        assert stat.S_ISREG(touch.st_mode) and touch.st_uid == code.uid, "made again as the customer's own file"
        assert os.stat(old / "db.sqlite3").st_uid == code.uid, "the customer's own files stay its own"
        refused = as_user(code.user, "open(__import__('sys').argv[1], 'a')", str(release / "app.py"))
        assert "PermissionError" in refused.stderr
    finally:
        shutil.rmtree(old, ignore_errors=True)
        canary.cleanup()
