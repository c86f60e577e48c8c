"""Shared resources (issue 11, item 8): what the vassal and the server block say for each limit."""

from __future__ import annotations

from pathlib import Path

import pytest

from hostctl.inventory import loader as inventory
from hostctl.render import templates
from hostctl.errors import InventoryError
from hostctl.render.identity import Identity
from hostctl.render.files import render
from tests.unit.test_validation import write_inventory

PRODUCTION = "run_dir: /run/hostctl\nlog_dir: /var/log/hostctl\n"


def _files(tmp_path: Path, settings: str, app: str, per_customer: bool = True) -> dict[str, str]:
    root = write_inventory(tmp_path / "inv", settings, {"acme.yaml": "apps:\n  web:\n    domains: [a.example]\n    wsgi: a:b\n" + app})
    inv = inventory.load(root)
    files = render(inv, Identity(per_customer, "www-data"), templates.environment(inv.root))
    return {f.kind: f.content for f in files.values()}


def test_defaults_open_files_private_tmp_and_connections(tmp_path: Path) -> None:
    files = _files(tmp_path, PRODUCTION, "    chdir: /srv/acme\n")
    assert "exec-as-root = prlimit --pid $PPID --nofile=4096:4096\n" in files["vassal"]
    assert "unshare = mount\nmount-as-root = none none / rec,private\n" in files["vassal"]
    assert "mount-as-root = tmpfs tmpfs /tmp nosuid,nodev size=67108864,mode=1777\n" in files["vassal"]
    assert "    limit_conn hostctl_conn 100;\n" in files["nginx"]


def test_per_app_values(tmp_path: Path) -> None:
    files = _files(tmp_path, PRODUCTION, "    connections: 7\n    open_files: 300\n    private_tmp: false\n")
    assert "--nofile=300:300" in files["vassal"] and "unshare" not in files["vassal"]
    assert "limit_conn hostctl_conn 7;" in files["nginx"]


def test_no_private_tmp_where_it_would_hide_the_apps_files(tmp_path: Path) -> None:
    """An app (or hostctl's directories) under /tmp: a private /tmp would hide them, so it is off unless asked for."""
    files = _files(tmp_path, PRODUCTION, "    chdir: /tmp/acme\n")
    assert "unshare" not in files["vassal"] and "--nofile=4096:4096" in files["vassal"]
    with pytest.raises(InventoryError, match=r"apps.web.private_tmp: a private /tmp would hide '/tmp/acme' from the app"):
        _files(tmp_path / "again", PRODUCTION, "    chdir: /tmp/acme\n    private_tmp: true\n")


def test_vassals_as_the_invoking_user_get_no_root_only_lines(tmp_path: Path) -> None:
    files = _files(tmp_path, PRODUCTION, "", per_customer=False)
    assert "prlimit" not in files["vassal"] and "unshare" not in files["vassal"]
