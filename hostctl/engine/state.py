"""Read what is live on disk for planning: the engine's readers (``hostctl/engine/core/plan.py``), errors as ``HostctlError``."""

from __future__ import annotations

from typing import Iterable

from hostctl.render import layout
from hostctl.engine.core import plan as _plan
from hostctl.engine.core.manifest import Manifest
from hostctl.engine.core.plan import Actual, LiveFile, read_file  # noqa: F401
from hostctl.errors import from_engine
from hostctl.inventory.spec import AppSpec, Inventory
from hostctl.inventory.schema import App
from hostctl.render.readback import server_names


def read_manifest(path: str) -> Manifest:
    with from_engine():
        return _plan.read_manifest(path)


def read(manifest_path: str, paths: Iterable[str]) -> Actual:
    with from_engine():
        return _plan.read(manifest_path, paths)


def held_apps(inventory: Inventory) -> list[AppSpec]:
    """The live apps of customers held back by their own broken file, from the manifest.

    Their inventory file cannot say which apps they have, but the manifest lists
    the vassals and server blocks hostctl last wrote for them (their
    last-known-good state), so `status`, `logs` and `limits` can still show them.
    Domains come from the live server block (root's file, bounded read).
    """
    if not inventory.held or inventory.settings.hosts:  # multi-host: the manifests are on the servers (status.remote)
        return []
    manifest = read_manifest(layout.manifest(inventory.settings))
    apps: dict[tuple[str, str], list[str]] = {}
    for entry in manifest.files.values():
        if entry.customer in inventory.held and entry.kind in ("vassal", "nginx"):
            apps.setdefault((entry.customer, entry.app), [])
    out = []
    for customer, app in sorted(apps):
        block = ""
        try:
            with open(layout.app_paths(inventory.settings, customer, app).server_block, "rb") as fh:
                block = fh.read(1 << 20).decode("utf-8", "replace")
        except OSError:
            pass
        out.append(held_app(customer, app, block))
    return out


def held_app(customer: str, app: str, server_block: str) -> AppSpec:
    """A held-back customer's live app as status and logs show it, its domains read from its live server block."""
    domains = list(dict.fromkeys(server_names(server_block)))
    return AppSpec(customer, app, App.model_construct(domains=domains, wsgi="", enabled=True))
