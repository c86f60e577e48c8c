"""Post-reload HTTP probes: is each changed customer's app really answering through nginx?

An app with ``probe: {path: /, status: 200, timeout: 5}`` in the inventory is
fetched through nginx with its own Host header after apply has reloaded
everything; until ``timeout`` seconds have passed, other answers (502 while the
vassal starts) are retried. A customer whose probe fails is rolled back to its
last-known-good files by the engine (``hostctl/engine/core/apply.py``). Apps without ``probe`` are never
probed. ``targets`` (pure) decides what to probe; the engine's ``run`` does the HTTP.
"""

from __future__ import annotations

from typing import Iterable

from hostctl.engine.core.probe import Outcome, Target, address, check, fetch, run  # noqa: F401  (the HTTP is the engine's)
from hostctl.inventory.spec import Inventory


def host_header(domain: str) -> str:
    """A name the app's server block answers to (a wildcard gets a label)."""
    return "probe" + domain[1:] if domain.startswith("*") else domain


def targets(inventory: Inventory, customers: Iterable[str]) -> list[Target]:
    wanted = set(customers)
    out = []
    for customer in inventory.customers:
        if customer.name not in wanted:
            continue
        for app in customer.apps:
            probe = app.config.probe
            if probe is None or not app.config.enabled:
                continue
            out.append(Target(customer.name, app.name, host_header(app.config.domains[0]), probe.path, probe.status, probe.timeout))
    return out
