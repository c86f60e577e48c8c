"""Render the inventory into file contents: pure, no I/O beyond loading templates.

``render(inventory, identity, env)`` returns ``{path: RenderedFile}`` for every
vassal ini and nginx server block the inventory asks for. Nothing here looks at
the disk's current state; ``plan.py`` compares, ``apply.py`` writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import jinja2

from hostctl.inventory import privatetmp
from hostctl.render import cgroups, layout, lifecycle, listens, ondemand, templates, tls
from hostctl.inventory import values
from hostctl.engine.core.plan import RenderedFile  # noqa: F401  (a value the engine plans with)
from hostctl.render.escape import INI_PLACEHOLDERS
from hostctl.inventory.spec import Inventory

Kind = Literal["vassal", "nginx", "socket"]  # socket: an on-demand companion (ondemand.py)
VASSAL_TEMPLATE = "vassal.ini.j2"
SERVER_TEMPLATE = "server.conf.j2"


@dataclass(frozen=True)
class Identity:
    """Who the vassals run as, decided at the edge (see ``identity.py``)."""

    per_customer: bool  # True: each vassal drops to its customer's Unix user
    nginx_group: str | None = None  # group of nginx's workers, for socket access
    cgroup: cgroups.Hierarchy | None = None  # where each customer's cgroup is (None: limits not enforced)


def render(inventory: Inventory, identity: Identity, env: jinja2.Environment,
           ready_certs: tls.ReadyCerts | None = None, shipped: tls.ShippedCerts | None = None) -> dict[str, RenderedFile]:
    """``ready_certs``: the certificates usable now (read at the edge, ``certs.ready``); none when omitted.
    ``shipped``: deploy's certificates for the host (``tls.decide``)."""
    vassal_t = templates.get(env, VASSAL_TEMPLATE)
    server_t = templates.get(env, SERVER_TEMPLATE)
    settings = inventory.settings
    out: dict[str, RenderedFile] = {}
    http_listens, https_listens = listens.http(settings), listens.https(settings)
    for customer in inventory.customers:
        user = customer.user if identity.per_customer else None
        for app in customer.apps:
            cfg = app.config
            paths = layout.app_paths(settings, customer.name, app.name)
            context = dict(
                settings=settings, customer=customer, app=app, cfg=cfg, paths=paths,
                user=user, group=user, placeholders=INI_PLACEHOLDERS,
                wsgi_file=values.wsgi_file(cfg.wsgi),
                cgroup_lines=cgroups.vassal_lines(identity.cgroup, customer.name),
                lifecycle_lines=lifecycle.vassal_lines(cfg),
                tls=tls.decide(app, settings, ready_certs or {}, shipped), challenge_path=tls.ACME_CHALLENGE,
                http_listens=http_listens, https_listens=https_listens,
                private_tmp=private_tmp_lines(settings, customer.name, cfg),
            )
            if cfg.enabled:  # a stopped app keeps its server block (503) but has no vassal
                out[paths.vassal] = RenderedFile(paths.vassal, templates.render(vassal_t, **context), "vassal", customer.name, app.name, 0o640)
            out[paths.server_block] = RenderedFile(paths.server_block, templates.render(server_t, **context), "nginx", customer.name, app.name, 0o644)
            if cfg.on_demand and cfg.enabled:
                path = ondemand.companion(paths.vassal)
                out[path] = RenderedFile(path, ondemand.content(paths.ondemand_socket), ondemand.KIND, customer.name, app.name, 0o640)
    return out


def private_tmp_lines(settings, customer: str, cfg) -> tuple[tuple[str, str], ...]:
    """The vassal's private /tmp (its customer's, see ``privatetmp``), or nothing."""
    dirs = (settings.run_dir, settings.log_dir, settings.emperor_dir)
    if not privatetmp.enabled(cfg, *dirs):
        return ()
    keep = privatetmp.kept(privatetmp.app_paths(cfg, *dirs))
    return privatetmp.vassal_lines(keep, privatetmp.customer_tmp(settings.state_dir, customer))
