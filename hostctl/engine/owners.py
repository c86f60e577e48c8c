"""Decide who vassals run as and who owns their directories (reads the user database).

Production runs a root Emperor and gives every vassal its customer's own Unix
user (``uid``/``gid`` in the vassal). Trying hostctl out unprivileged runs
everything as the invoking user. ``isolation.users`` in hostctl.yaml picks
(``auto``: per-customer when running as root).
"""

from __future__ import annotations

import grp
import os
import pwd
from dataclasses import dataclass, field

from hostctl.engine import state
from hostctl.engine.core import accounts
from hostctl.engine.core.accounts import DEFAULT_NGINX_USER
from hostctl.engine.core.manifest import Manifest
from hostctl.errors import HostctlError, Problem
from hostctl.inventory.spec import Inventory
from hostctl.render import layout
from hostctl.render.identity import Identity


@dataclass(frozen=True)
class Owners:
    """Numeric owners for the files and directories apply creates (-1: leave as is)."""

    identity: Identity
    root: bool
    nginx_gid: int = -1
    customers: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (uid, gid)
    missing_users: tuple[str, ...] = ()  # per-customer users that do not exist yet (apply --create-users)

    def of(self, customer: str) -> tuple[int, int]:
        return self.customers.get(customer, (-1, -1))

    def describe(self) -> str:
        if self.identity.per_customer:
            return "vassals run as each customer's own Unix user"
        who = pwd.getpwuid(os.geteuid()).pw_name
        return f"vassals run as the invoking user ({who}): isolation.users is 'invoker' or hostctl is not root"


def nginx_group(inventory: Inventory, root: bool) -> str | None:
    configured = inventory.settings.nginx.group
    if configured:
        return configured
    if not root:
        return None
    try:
        return grp.getgrgid(pwd.getpwnam(DEFAULT_NGINX_USER).pw_gid).gr_name
    except KeyError:
        return None


def resolve(inventory: Inventory, euid: int | None = None, allow_missing: bool = False) -> tuple[Owners, list[Problem]]:
    """Who vassals run as; ``allow_missing`` lists absent customer users instead of failing on them."""
    euid = os.geteuid() if euid is None else euid
    root = euid == 0
    mode = inventory.settings.isolation.users
    per_customer = mode == "per-customer" or (mode == "auto" and root)
    problems: list[Problem] = []
    group = nginx_group(inventory, root)
    nginx_gid = -1
    if group:
        try:
            nginx_gid = grp.getgrnam(group).gr_gid
        except KeyError:
            problems.append(inventory.problem("hostctl.yaml", ("nginx", "group"), f"group {group!r} does not exist"))
    if per_customer and not root:
        problems.append(inventory.problem("hostctl.yaml", ("isolation", "users"),
                                          "'per-customer' needs root (vassals switch to each customer's user); run as root or use 'invoker'"))
    customers: dict[str, tuple[int, int]] = {}
    missing: list[str] = []
    iso = inventory.settings.isolation
    if per_customer:
        for customer in inventory.customers:
            try:
                entry = pwd.getpwnam(customer.user)
            except KeyError:
                if allow_missing and root:
                    missing.append(customer.user)
                    continue
                problems.append(inventory.problem(customer.file, ("user",) if "user" in inventory.sources[customer.file].data else (),
                                                  f"Unix user {customer.user!r} does not exist (run `hostctl apply --create-users`, or create it, e.g. "
                                                  f"`useradd --system --no-create-home -K SYS_UID_MIN={iso.uid_min} -K SYS_UID_MAX={iso.uid_max} {customer.user}`)"))
                continue
            customers[customer.name] = (entry.pw_uid, entry.pw_gid)
        problems += account_problems(inventory, group)
    identity = Identity(per_customer=per_customer, nginx_group=group)
    return Owners(identity, root, nginx_gid, customers, tuple(missing)), problems


def account_problems(inventory: Inventory, nginx_group: str | None) -> list[Problem]:
    """The engine's account rule (``engine/core/accounts.py``, the code every host runs before it writes)
    for every customer's user, here as problems at its file and ``user`` field."""
    iso, s = inventory.settings.isolation, inventory.settings
    try:
        manifest = state.read_manifest(layout.manifest(s))
    except HostctlError:
        manifest = Manifest()
    found = accounts.refusals({c.name: c.user for c in inventory.customers}, iso.uid_min, iso.uid_max,
                              DEFAULT_NGINX_USER, nginx_group, manifest, s.emperor_dir)
    out = []
    for customer in inventory.customers:
        if customer.name in found:
            field = ("user",) if "user" in inventory.sources[customer.file].data else ()
            out.append(inventory.problem(customer.file, field, found[customer.name]))
    return out
