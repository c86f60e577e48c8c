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

PRODUCTION = "run_dir: /run/hostctl\nlog_dir: /var/log/hostctl\nemperor_dir: /etc/uwsgi/vassals\nstate_dir: /var/lib/hostctl\n"


def _files(tmp_path: Path, settings: str, app: str, per_customer: bool = True) -> dict[str, str]:
    root = write_inventory(tmp_path / "inv", settings, {"acme.yaml": "apps:\n  web:\n    domains: [a.example]\n    wsgi: a:b\n" + app})
    inv = inventory.load(root)
    files = render(inv, Identity(per_customer, "www-data"), templates.environment(inv.root))
    return {f.kind: f.content for f in files.values()}


def test_defaults_open_files_private_tmp_and_connections(tmp_path: Path) -> None:
    files = _files(tmp_path, PRODUCTION, "    chdir: /srv/acme\n")
    assert "exec-as-root = prlimit --pid $PPID --nofile=4096:4096\n" in files["vassal"]
    assert ("unshare = mount\nmount-as-root = none none / rec,private\n"
            "mount-as-root = none /var/lib/hostctl/tmp/acme /tmp bind,rec\n"
            "mount-as-root = none /tmp /tmp remount,bind,nosuid,nodev\n") in files["vassal"]
    assert "    limit_conn hostctl_conn 100;\n" in files["nginx"]


def test_per_app_values(tmp_path: Path) -> None:
    files = _files(tmp_path, PRODUCTION, "    connections: 7\n    open_files: 300\n    private_tmp: false\n")
    assert "--nofile=300:300" in files["vassal"] and "unshare" not in files["vassal"]
    assert "limit_conn hostctl_conn 7;" in files["nginx"]


def test_the_apps_directories_under_tmp_are_mounted_back_into_its_private_tmp(tmp_path: Path) -> None:
    """An app (or hostctl's directories) under /tmp: each first component under /tmp is mounted onto root's
    directory of that name in the customer's /tmp before it goes over /tmp (recursively), so it stays reachable."""
    files = _files(tmp_path, "run_dir: /tmp/hc/run\nlog_dir: /var/log/hostctl\nstate_dir: /var/lib/hc\nemperor_dir: /etc/v\n",
                   "    chdir: /tmp/acme/app\n")
    assert ("mount-as-root = none none / rec,private\n"
            "mount-as-root = none /tmp/acme /var/lib/hc/tmp/acme/acme bind\n"
            "mount-as-root = none /tmp/hc /var/lib/hc/tmp/acme/hc bind\n"
            "mount-as-root = none /var/lib/hc/tmp/acme /tmp bind,rec\n") in files["vassal"]
    from hostctl.inventory import loader as inventory_loader
    from hostctl.render import layout

    inv = inventory_loader.load(tmp_path / "inv")
    [acme] = inv.customers
    from hostctl.engine import dirs
    keep = dirs.tmp_keep(inv.settings, True, acme)
    assert keep == ("acme", "hc")
    assert [(d.path, oct(d.mode), d.owner) for d in layout.private_tmp_dirs(inv.settings, "acme", keep)] == [
        ("/var/lib/hc/tmp", "0o700", "root"), ("/var/lib/hc/tmp/acme", "0o1777", "root"),
        ("/var/lib/hc/tmp/acme/acme", "0o755", "root"), ("/var/lib/hc/tmp/acme/hc", "0o755", "root")]


def test_no_private_tmp_where_it_would_hide_tmp_itself(tmp_path: Path) -> None:
    files = _files(tmp_path, "run_dir: /tmp\nlog_dir: /var/log/hostctl\nemperor_dir: /etc/v\n", "    chdir: /srv/acme\n")
    assert "unshare" not in files["vassal"] and "--nofile=4096:4096" in files["vassal"]
    with pytest.raises(InventoryError, match=r"apps.web.private_tmp: a private /tmp would hide '/tmp' from the app"):
        _files(tmp_path / "again", "run_dir: /tmp\nlog_dir: /var/log/hostctl\nemperor_dir: /etc/v\n", "    chdir: /srv/acme\n    private_tmp: true\n")


def test_vassals_as_the_invoking_user_get_no_root_only_lines(tmp_path: Path) -> None:
    files = _files(tmp_path, PRODUCTION, "", per_customer=False)
    assert "prlimit" not in files["vassal"] and "unshare" not in files["vassal"]
