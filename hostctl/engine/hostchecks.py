"""`hostctl validate` for a multi-host inventory: every check that needs no server, host by host.

A multi-host inventory is checked in CI or a pre-commit hook, where no server can be
reached: nothing here opens a connection or reads a server's state. Each host's view is
rendered with that host's paths and the identity its settings give (``host_identity``),
and read back as the engine does before writing (``vetting``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hostctl.engine import vetting
from hostctl.engine.pipeline import gc_paused
from hostctl.errors import InventoryError
from hostctl.inventory import loader as inventory_mod, placement
from hostctl.inventory.spec import Inventory
from hostctl.render import identity as identity_mod, templates
from hostctl.render.files import render


@dataclass(frozen=True)
class HostsChecked:
    """A multi-host inventory checked without touching a server: each host's customers and rendered files."""

    inventory: Inventory
    files: dict[str, int]  # host -> files rendered for it
    customers: dict[str, int]  # host -> customers placed on it


def check_hosts(root: Path | str) -> HostsChecked:
    """``validate`` for a multi-host inventory: everything that needs no server, host by host.

    The inventory's own checks (every file, placement, domains across all hosts, one server
    per host, ports), then each host's view rendered with its paths and the identity its
    settings give, and read back as the engine would before writing (``vetting``). What
    lives on the servers (virtualenvs, users, certificates, nginx's other servers) is not read.
    Raises ``InventoryError`` listing every problem, or ``HostctlError`` for a template.
    """
    with gc_paused():
        inv = inventory_mod.load(root)
    env = templates.environment(inv.root)
    files, customers, problems = {}, {}, []
    for name in sorted(inv.settings.hosts):
        view = placement.host_inventory(inv, name)
        ident = identity_mod.host_identity(inv.settings, name)
        desired = render(view, ident, env)
        files[name], customers[name] = len(desired), len(view.customers)
        for r in vetting.readback_problems(view, desired, ident.per_customer, [c.name for c in view.customers]):
            spec = view.customer(r.customer)
            problems.append(inv.problem(spec.file if spec else "hostctl.yaml", (), f"on host {name!r}: {r.file}: {r.reason}"))
    if problems:
        raise InventoryError(problems)
    return HostsChecked(inv, files, customers)
