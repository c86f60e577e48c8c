"""Who the vassals run as: the ``Identity`` rendering is given, and how a remote host's is decided (pure).

Locally the identity is decided at the edge, from the user database (``hostctl.engine.owners``);
for a host reached by deploy, ``host_identity`` decides it from the settings alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from hostctl.errors import HostctlError
from hostctl.inventory import placement
from hostctl.inventory.schema import Settings
from hostctl.render import cgroups

DEFAULT_NGINX_GROUP = "www-data"


@dataclass(frozen=True)
class Identity:
    """Who the vassals run as, decided at the edge (see ``hostctl.engine.owners``)."""

    per_customer: bool  # True: each vassal drops to its customer's Unix user
    nginx_group: str | None = None  # group of nginx's workers, for socket access
    cgroup: cgroups.Hierarchy | None = None  # where each customer's cgroup is (None: limits not enforced)


def host_identity(settings: Settings, name: str) -> "Identity":
    """Who the vassals on host ``name`` run as: decided from the settings (its user database is not read here).

    ``auto`` and ``per-customer`` mean per-customer users, which need root there: the SSH user
    is root, or the host has ``become: sudo``. Otherwise that is an error naming the host
    (``placement.isolation_problem``), unless the inventory says ``users: invoker`` for it.
    """
    problem = placement.isolation_problem(settings, name)
    if problem is not None:
        raise HostctlError(problem)
    host = settings.hosts[name]
    root = placement.runs_as_root(host)
    per_customer = root and placement.host_users(settings, host) != "invoker"
    group = settings.nginx.group or (DEFAULT_NGINX_GROUP if root else None)
    return Identity(per_customer=per_customer, nginx_group=group)
