"""Isolation and limits beyond files: the users to create and the cgroup changes, planned and applied.

``attach`` decides (at the edge) which cgroup hierarchy enforces limits and
hands it to rendering through the ``Identity``; ``prepare`` plans the cgroup
directories and limit files per customer against their live values; ``render``
shows that plan; ``execute`` performs it before any vassal is written, so a
vassal never starts outside its customer's limits.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from pathlib import Path

from hostctl.engine import cgroupfs, owners as identity
from hostctl.engine.owners import Owners
from hostctl.errors import Problem
from hostctl.inventory import loader as inventory_mod
from hostctl.inventory.spec import Inventory
from hostctl.render import cgroups
from hostctl.render.cgroups import CgroupChange, Hierarchy, Usage


@dataclass(frozen=True)
class IsolationPlan:
    hierarchy: Hierarchy
    changes: tuple[CgroupChange, ...] = ()
    notes: tuple[str, ...] = ()  # limits set in the inventory that are not enforced here
    users: tuple[str, ...] = ()  # Unix users `apply --create-users` creates

    @property
    def empty(self) -> bool:
        return not self.changes and not self.users


def attach(inv: Inventory, owners: Owners, euid: int | None = None) -> tuple[Owners, list[Problem]]:
    """Decide the cgroup hierarchy for this host and record it in the owners' identity."""
    hierarchy, errors = cgroupfs.hierarchy(inv.settings, euid, owners.identity.per_customer)
    problems = [inv.problem("hostctl.yaml", ("cgroup", "mode"), e) for e in errors]
    return replace(owners, identity=replace(owners.identity, cgroup=hierarchy)), problems


def prepare(inv: Inventory, owners: Owners) -> IsolationPlan:
    h = owners.identity.cgroup or Hierarchy(None, why_off="not decided")
    desired = [cgroups.customer_cgroup(h, c.name, c.limits) for c in inv.customers]
    notes = tuple(f"{cg.customer}: {n}" for cg in desired for n in cg.notes)
    limited = [cg.customer for cg in desired if cg.notes]
    if h.version is None and limited:  # one line, not one per customer and limit
        who = ", ".join(limited[:5]) + (f" and {len(limited) - 5} more" if len(limited) > 5 else "")
        notes = (f"the limits of {who} are not enforced: {h.why_off}",)
    changes: tuple[CgroupChange, ...] = ()
    if h.version is not None:
        live, present = cgroupfs.read_live(desired, h)
        present = [d for d in present if d.rpartition("/")[2] not in inv.held]  # held back: its cgroup stays as it is
        changes = cgroups.plan(desired, live, present)
    return IsolationPlan(h, changes, notes, owners.missing_users)


def render(plan: IsolationPlan) -> str:
    """Users to create and cgroup changes, one line each (empty when there are none)."""
    lines = [f"+ user {u} (created by `hostctl apply --create-users`)" for u in plan.users]
    if plan.users:
        lines.append("note: each new customer needs its Unix user: run `hostctl apply --create-users` (the default; "
                     "leave it off only if you create users yourself, e.g. from LDAP)")
    return "".join(line + "\n" for line in lines) + cgroups.render_changes(plan.changes)


def summary(plan: IsolationPlan, done: bool) -> str:
    """The last line of a plan or apply whose files did not change but whose users or cgroups did."""
    parts = [f"{len(plan.changes)} cgroup change(s) {'made' if done else 'to make'}"] if plan.changes else []
    if plan.users:
        parts.append(f"{len(plan.users)} user(s) {'created' if done else 'to create'}")
    if done:
        return "Apply complete: no file changes; " + ", ".join(parts) + "."
    return "Plan: no file changes; " + ", ".join(parts) + " (listed above)."


def execute(plan: IsolationPlan) -> list[str]:
    return cgroupfs.apply(plan.changes)


def usage(root: Path | str) -> tuple[Hierarchy, list[tuple[str, Usage | None]]]:
    """The hierarchy and each customer's live cgroup figures (reading needs no root)."""
    inv = inventory_mod.load(root, partial=True)  # held-back customers keep their cgroups: show them too
    owners, _ = identity.resolve(inv, allow_missing=True)
    h, _ = cgroupfs.hierarchy(inv.settings, euid=0, per_customer=owners.identity.per_customer)  # where they would be
    names = sorted([c.name for c in inv.customers] + list(inv.held))
    return h, [(name, cgroupfs.usage(h, name)) for name in names]
