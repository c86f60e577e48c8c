"""Hostile tenant, class 4: nginx never serves another owner's file through a customer's static symlink.

nginx's workers (www-data) can read more than any one customer: every released
app root is mode 2750 with nginx's group (so nginx can serve its static files),
so its code and settings are readable by nginx. A customer owns its static
directory; if nginx followed a symlink planted there, the customer could fetch
a neighbour's file through its own domain. The customer "acme" plants such a
link (to a file of globex's that only globex and nginx's group may read) and
asks for it; it must not get it. Its own files, and a link to one of its own
files, are still served.
"""

from __future__ import annotations

import grp
import os
import pwd
import secrets
from typing import Iterator

import pytest

from tests.hostile import Tenants, as_user, plant_symlink, tenants_running

pytestmark = pytest.mark.integration

READ = "import sys\ntry:\n    print(open(sys.argv[1]).read())\nexcept OSError as exc:\n    print('refused', exc)\n"


@pytest.fixture
def tenants() -> Iterator[Tenants]:
    yield from tenants_running()


def test_static_symlink_to_a_neighbours_file_is_not_served(tenants: Tenants) -> None:
    acme = pwd.getpwnam(tenants.users["acme"])
    globex = pwd.getpwnam(tenants.users["globex"])
    nginx_gid = grp.getgrnam("www-data").gr_gid
    # acme's static directory is acme's (it is inside the tree its code writes).
    static = tenants.box.root / "static"
    os.chown(static, acme.pw_uid, acme.pw_gid)
    own = static / "own.txt"
    own.write_text("acme's own file\n")
    os.chown(own, acme.pw_uid, acme.pw_gid)
    assert plant_symlink(tenants.user, own, str(static / "own-link.txt"))
    # globex's code, readable by nginx's group (like a released app root), not by acme.
    code = tenants.box.root / "globex-code"
    code.mkdir()
    os.chown(code, globex.pw_uid, nginx_gid)
    os.chmod(code, 0o2750)
    secret = "GLOBEX-SECRET-" + secrets.token_hex(8)
    settings = code / "settings.py"
    settings.write_text(f"SECRET_KEY = {secret!r}\n")
    os.chown(settings, globex.pw_uid, nginx_gid)
    os.chmod(settings, 0o640)
    assert as_user(tenants.user, READ, str(settings)).stdout.startswith("refused"), "acme can read globex's file directly"

    assert plant_symlink(tenants.user, settings, str(static / "leak.txt")), "acme could not plant in its own static dir"
    assert plant_symlink(tenants.user, code, str(static / "leakdir")), "acme could not plant in its own static dir"

    server = tenants.server
    assert server is not None
    assert server.request("acme.example", "/static/own.txt") == (200, b"acme's own file\n")
    assert server.request("acme.example", "/static/own-link.txt") == (200, b"acme's own file\n")
    for path in ("/static/leak.txt", "/static/leakdir/settings.py"):
        status, body = server.request("acme.example", path)
        assert secret.encode() not in body and status != 200, \
            f"nginx served globex's {settings} to acme through acme's static symlink {path}: HTTP {status}"


def test_a_symlink_planted_as_the_static_directory_itself_is_not_followed(tenants: Tenants) -> None:
    """The whole static directory swapped for a link (the customer owns the place it lies in)."""
    acme = pwd.getpwnam(tenants.users["acme"])
    globex = pwd.getpwnam(tenants.users["globex"])
    nginx_gid = grp.getgrnam("www-data").gr_gid
    parent = tenants.box.root / "acme-home"
    parent.mkdir()
    os.chown(parent, acme.pw_uid, acme.pw_gid)
    os.chmod(parent, 0o755)
    (parent / "static").mkdir()
    os.chown(parent / "static", acme.pw_uid, acme.pw_gid)
    tenants.write("acme", ["acme.example"], static={"/static/": str(parent / "static")})
    tenants.box.hostctl("apply")
    code = tenants.box.root / "globex-code2"
    code.mkdir()
    os.chown(code, globex.pw_uid, nginx_gid)
    os.chmod(code, 0o2750)
    secret = "GLOBEX-SECRET-" + secrets.token_hex(8)
    (code / "settings.py").write_text(secret + "\n")
    os.chown(code / "settings.py", globex.pw_uid, nginx_gid)
    os.chmod(code / "settings.py", 0o640)
    swap = "import os, sys\nos.rename(sys.argv[2], sys.argv[2] + '.old')\nos.symlink(sys.argv[1], sys.argv[2])\nprint('planted')\n"
    out = as_user(tenants.user, swap, str(code), str(parent / "static"))
    assert out.stdout.startswith("planted"), out.stderr
    server = tenants.server
    assert server is not None
    status, body = server.request("acme.example", "/static/settings.py")
    assert secret.encode() not in body and status != 200, \
        f"nginx served globex's file to acme through acme's static directory swapped for a symlink: HTTP {status}"
