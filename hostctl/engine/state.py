"""Read what is live on disk: the manifest and the files hostctl may touch.

The only module that reads the live directories for planning. It returns plain
records (``hostctl.plan.files.Actual``) that ``hostctl.plan.diff`` compares with the rendered files.
"""

from __future__ import annotations

import os
import stat
from typing import Iterable

from hostctl.errors import HostctlError
from hostctl.inventory.schema import App
from hostctl.inventory.spec import AppSpec, Inventory
from hostctl.plan.files import Actual, LiveFile
from hostctl.plan.manifest import Manifest
from hostctl.render import layout
from hostctl.render.readback import server_names


def read_file(path: str) -> LiveFile:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return LiveFile(None)
    if not stat.S_ISREG(st.st_mode):
        return LiveFile(None, None, not_a_file=True)
    with open(path, "rb") as fh:
        return LiveFile(fh.read(), stat.S_IMODE(st.st_mode))


def read_manifest(path: str) -> Manifest:
    try:
        with open(path, encoding="utf-8") as fh:
            return Manifest.from_json(fh.read())
    except FileNotFoundError:
        return Manifest()
    except (ValueError, KeyError, TypeError) as exc:
        raise HostctlError(f"{path}: the manifest is damaged ({exc}); move it aside to let hostctl rebuild it") from exc


def read(manifest_path: str, paths: Iterable[str]) -> Actual:
    """The manifest plus the current content of ``paths`` and of every file it lists."""
    manifest = read_manifest(manifest_path)
    wanted = set(paths) | set(manifest.files)
    return Actual(manifest, {path: read_file(path) for path in sorted(wanted)})


def held_apps(inventory: Inventory) -> list[AppSpec]:
    """The live apps of customers held back by their own broken file, from the manifest.

    Their inventory file cannot say which apps they have, but the manifest lists
    the vassals and server blocks hostctl last wrote for them (their
    last-known-good state), so `status`, `logs` and `limits` can still show them.
    Domains come from the live server block (root's file, bounded read).
    """
    if not inventory.held:
        return []
    manifest = read_manifest(layout.manifest(inventory.settings))
    apps: dict[tuple[str, str], list[str]] = {}
    for entry in manifest.files.values():
        if entry.customer in inventory.held and entry.kind in ("vassal", "nginx"):
            apps.setdefault((entry.customer, entry.app), [])
    out = []
    for customer, app in sorted(apps):
        domains: list[str] = []
        try:
            with open(layout.app_paths(inventory.settings, customer, app).server_block, "rb") as fh:
                domains = list(dict.fromkeys(server_names(fh.read(1 << 20).decode("utf-8", "replace"))))
        except OSError:
            pass
        config = App.model_construct(domains=domains, wsgi="", enabled=True)
        out.append(AppSpec(customer, app, config))
    return out
