"""Who the vassals run as: the ``Identity`` rendering is given, and how a remote host's is decided (pure).

Locally the identity is decided at the edge, from the user database (``hostctl.engine.owners``);
for a host reached by deploy, ``host_identity`` decides it from the settings alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from hostctl.inventory.schema import Host, Settings
from hostctl.render import cgroups

DEFAULT_NGINX_GROUP = "www-data"


@dataclass(frozen=True)
class Identity:
    """Who the vassals run as, decided at the edge (see ``hostctl.engine.owners``)."""

    per_customer: bool  # True: each vassal drops to its customer's Unix user
    nginx_group: str | None = None  # group of nginx's workers, for socket access
    cgroup: cgroups.Hierarchy | None = None  # where each customer's cgroup is (None: limits not enforced)


def host_identity(settings: Settings, host: Host) -> "Identity":
    """Who the vassals on ``host`` run as: decided from the settings (its user database is not read here).

    ``auto`` means per-customer users when hostctl logs in as root, as it does locally.
    """
    mode = settings.isolation.users
    per_customer = mode == "per-customer" or (mode == "auto" and host.user == "root")
    group = settings.nginx.group or (DEFAULT_NGINX_GROUP if host.user == "root" else None)
    return Identity(per_customer=per_customer, nginx_group=group)
