"""Per-customer quarantine: which customers' changes may go live, decided purely.

One customer's broken output must never block the others (piku#62, dokku#1581,
caprover#412). ``engine/vetting.py`` runs the checks; this module decides with their
results: ``find_culprits`` narrows a failing set of customers down by bisection
(given any pass/fail check), and ``restrict`` drops a quarantined customer's
changes from the plan (``keep_live`` all of them, for a customer whose own
inventory file is broken), so its last-known-good files stay live (or it stays
absent if it never had good ones) while everyone else's changes go ahead.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Iterable, Mapping, Sequence

from hostctl.engine.core.manifest import Manifest
from hostctl.engine.core.plan import Plan, changed_customers, restrict  # noqa: F401
from hostctl.engine.core.quarantine import Rejection, admit, find_culprits  # noqa: F401
from hostctl.errors import Problem


def keep_live(plan: Plan, old: Manifest, held: Iterable[str]) -> Plan:
    """``plan`` without any change to the ``held`` customers' files, removals included.

    A customer whose own inventory file is broken is left out of what is rendered,
    so the plan would remove its files; instead they stay exactly as they are live
    (its last-known-good state) and stay in the manifest.
    """
    held = set(held)
    if not held:
        return plan
    keep = tuple(c for c in plan.changes if c.customer not in held)
    files = {p: e for p, e in plan.manifest.files.items() if e.customer not in held}
    files.update({p: replace(e, previous=None) for p, e in old.files.items() if e.customer in held})
    return Plan(keep, plan.conflicts, Manifest(files), plan.unchanged)


def held_back(held: Mapping[str, Sequence[Problem]]) -> list[Rejection]:
    """One rejection per problem of a customer held back by its own inventory file."""
    return [Rejection(customer, f"{p.file}:{p.line}" if p.line else p.file, f"{p.field}: {p.message}" if p.field else p.message)
            for customer, problems in held.items() for p in problems]


def report(rejections: Sequence[Rejection]) -> str:
    """The text for the operator: one line per held-back customer."""
    lines = [f"{len({r.customer for r in rejections})} customer(s) quarantined; their last-known-good files stay live:"]
    lines += [f"  {r}" for r in sorted(rejections)]
    return "\n".join(lines)
