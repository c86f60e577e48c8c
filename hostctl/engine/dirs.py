"""The socket and log directories of every customer, as ``render.layout`` says, made safely (``securefs``).

Used by apply (before any vassal or server block is written) and by ``limits
--apply``, which runs before the Emperor at boot: ``run_dir`` is often on a
tmpfs (``/run/hostctl``), and a vassal cannot bind its socket in a directory
that is gone.
"""

from __future__ import annotations

from typing import Mapping

from hostctl.engine.core import securefs
from hostctl.engine.owners import Owners
from hostctl.inventory import privatetmp
from hostctl.inventory.schema import Settings
from hostctl.inventory.spec import CustomerSpec
from hostctl.render import layout


def wanted_dirs(settings: Settings, owners: Owners, customers: Mapping[str, tuple[str, ...] | None]) -> list[securefs.WantedDir]:
    """The shared and per-customer directories (``layout``'s rules) with numeric owners (-1: leave as is)."""
    def ids(spec: layout.DirSpec, customer: str | None) -> tuple[int, int]:
        if not owners.root:
            return -1, -1
        uid, gid = owners.of(customer) if customer else (-1, -1)
        nginx_gid = owners.nginx_gid if owners.nginx_gid != -1 else (gid if customer else 0)
        return ({"root": 0, "customer": uid}[spec.owner],
                {"root": 0, "customer": gid, "nginx": nginx_gid}[spec.group])

    out = [securefs.WantedDir(s.path, s.mode, *ids(s, None)) for s in layout.shared_dirs(settings)]
    for customer in sorted(customers):
        out += [securefs.WantedDir(s.path, s.mode, *ids(s, customer))
                for s in layout.customer_dirs(settings, customer, customers[customer])]
    return out


def ensure_customer_dirs(settings: Settings, owners: Owners, customers: Mapping[str, tuple[str, ...] | None]) -> list[str]:
    """Socket and log directories, owned as ``layout`` says (root's where root writes), and each customer's
    private /tmp (``customers``: name -> its mount points, None: none); returns migration notes."""
    return securefs.make_dirs(wanted_dirs(settings, owners, customers))

def tmp_keep(settings: Settings, per_customer: bool, customer: CustomerSpec) -> tuple[str, ...] | None:
    """The mount points of ``customer``'s private /tmp (None: it has none; vassals as the invoker never do)."""
    if not per_customer:
        return None
    return privatetmp.customer_keep([a.config for a in customer.apps], settings.run_dir, settings.log_dir,
                                    settings.emperor_dir)
