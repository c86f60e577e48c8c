"""Static targets (issue 11, item 4): the allowed roots, nginx's symlink guard, and nginx's access to the directory."""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
from pathlib import Path

import pytest

from hostctl.engine import checks
from hostctl.inventory import loader as inventory
from hostctl.inventory import staticfiles
from tests.unit.test_validation import write_inventory


@pytest.mark.parametrize("target, chdir, roots, want", [
    ("/srv/a/static", "/srv/a", [], "/srv/a"), ("/srv/a", "/srv/a", [], "/srv/a"),
    ("/srv/a2/static", "/srv/a", [], None), ("/", "/srv/a", [], None),
    ("/srv/s/a/img", "/srv/a", ["/srv/s", "/srv/s/a"], "/srv/s/a"), ("/anything", None, ["/"], "/"),
])
def test_allowed_root(target: str, chdir: str | None, roots: list[str], want: str | None) -> None:
    assert staticfiles.allowed_root(target, (chdir, None), roots) == want
    assert staticfiles.allowed_root(target, (None, chdir), roots) == want  # a released app's root counts the same


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chown to www-data's neighbours)")
def test_a_directory_nginx_cannot_enter_is_found() -> None:
    www = pwd.getpwnam("www-data")
    top = Path(tempfile.mkdtemp(prefix="hostctl-static-", dir="/tmp"))  # pytest's tmp_path is under a 0700 directory
    try:
        _blocked(www, top)
    finally:
        shutil.rmtree(top)


def _blocked(www: pwd.struct_passwd, top: Path) -> None:
    os.chmod(top, 0o755)
    base = top / "home"
    (base / "app" / "static").mkdir(parents=True)
    os.chmod(base, 0o750)
    os.chown(base, 0, 0)
    assert checks.blocked_directory(str(base / "app" / "static"), www.pw_uid, {www.pw_gid})[0] == str(base)
    os.chown(base, 0, www.pw_gid)  # group www-data with g+x: enough
    assert checks.blocked_directory(str(base / "app" / "static"), www.pw_uid, {www.pw_gid}) is None
    assert checks.blocked_directory(str(base / "missing" / "static"), www.pw_uid, {www.pw_gid}) is None
