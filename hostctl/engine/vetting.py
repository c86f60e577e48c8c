"""Vet the candidate files before anything goes live, and hold back the customers at fault.

Two kinds of check, cheapest first (the first here, on the control side; the
second in the engine, where the server blocks are):

1. per changed customer, pure (``render/readback.py``): each vassal parsed back as
   uWSGI reads it must say exactly what the inventory says; runtime paths stay
   in the customer's directories; the server blocks name exactly its domains (HTTP and HTTPS servers together);
2. ``nginx -t`` on the whole candidate set (every server block as it will be
   after apply, plus files hostctl did not write) in a scaffold: one call,
   ~5 ms plus ~0.7 ms per block. Only when it fails are the changed customers'
   blocks checked alone, by bisection (``quarantine.find_culprits``), and the set
   is checked again without the culprits. If it still fails (customers that
   clash only together), the remaining changed customers are admitted group by
   group onto the last-known-good set while it passes (``quarantine.admit``);
   if even the last-known-good set fails, nothing is written.

The result is the plan restricted to the good customers plus one ``Rejection``
per held-back customer, naming the file and nginx's or the parser's reason.
"""

from __future__ import annotations

from typing import Mapping, Sequence

from hostctl.render import layout, readback
from hostctl.engine.core import nginx as engine_nginx, vetting as engine_vetting
from hostctl.engine.core.manifest import Manifest
from hostctl.engine.core.plan import Plan, RenderedFile, changed_customers, restrict
from hostctl.engine.core.quarantine import Rejection
from hostctl.engine.core.vetting import Check
from hostctl.errors import from_engine
from hostctl.inventory.spec import Inventory
from hostctl.engine.pipeline import Prepared


def rendered_problems(prepared: Prepared, customers: Sequence[str]) -> list[Rejection]:
    """Check 1: the pure per-customer read-back of ``customers``' rendered files."""
    return readback_problems(prepared.inventory, prepared.desired, prepared.owners.identity.per_customer, customers)


def readback_problems(inv: Inventory, desired: Mapping[str, RenderedFile], per_customer: bool,
                      customers: Sequence[str]) -> list[Rejection]:
    """Check 1 for an inventory (or one host's view of it) and its rendered files."""
    settings = inv.settings
    wanted = set(customers)
    out = []
    for customer in inv.customers:
        if customer.name not in wanted:
            continue
        user = customer.user if per_customer else None
        for app in customer.apps:
            cfg = app.config
            paths = layout.app_paths(settings, customer.name, app.name)
            found: list[tuple[str, str]] = []
            vassal = desired.get(paths.vassal)
            if vassal is not None:
                found += [(paths.vassal, why) for why in readback.vassal_problems(vassal.content, readback.intended(cfg, paths, user))]
            server = desired.get(paths.server_block)
            names = sorted(set(readback.server_names(server.content))) if server is not None else []
            if server is not None and names != sorted(set(cfg.domains)):
                found.append((paths.server_block, f"server_name reads back as {names!r}, expected {sorted(set(cfg.domains))!r}"))
            found += [(paths.vassal, why) for why in readback.path_problems(cfg, paths, settings.run_dir, settings.log_dir)]
            out += [Rejection(customer.name, path, why) for path, why in found]
    return out


def vet(prepared: Prepared, old: Manifest, check: Check | None = None, readback: bool = True) -> tuple[Plan, list[Rejection]]:
    """The plan restricted to customers whose output passed, and why the others were held back.

    Check 1 here; check 2 is the engine's (``hostctl/engine/core/vetting.py``), on the live server blocks.
    """
    settings = prepared.inventory.settings
    if check is None:
        from hostctl.engine import nginx

        scaffold = nginx.engine_nginx(settings, prepared.env)
        check = lambda blocks: engine_nginx.check(scaffold, blocks)  # noqa: E731
    rejections = rendered_problems(prepared, changed_customers(prepared.plan)) if readback else []
    held = {r.customer for r in rejections}
    if any(c.kind == "nginx" and c.customer not in held for c in prepared.plan.changes):
        candidates = engine_vetting.Candidates(engine_vetting.live_blocks(settings.nginx_dir), prepared.plan.changes,
                                               prepared.plan.manifest)
        with from_engine():
            rejections += engine_vetting.nginx_problems(candidates, held, check)
        held |= {r.customer for r in rejections}
    return restrict(prepared.plan, old, held), rejections
