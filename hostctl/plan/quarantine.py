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

from dataclasses import dataclass, replace
from typing import Callable, Iterable, Mapping, Sequence

from hostctl.errors import Problem
from hostctl.plan.diff import Plan
from hostctl.plan.manifest import Manifest


@dataclass(frozen=True, order=True)
class Rejection:
    """Why one customer's new files were held back."""

    customer: str
    file: str  # the rendered file at fault (or the customer's files, comma-separated)
    reason: str

    def __str__(self) -> str:
        return f"{self.customer}: {self.file}: {self.reason}"


def changed_customers(plan: Plan) -> list[str]:
    """Customers whose files this plan creates or rewrites (removals cannot break anything)."""
    return sorted({c.customer for c in plan.changes if c.action != "delete"})


def find_culprits(items: Sequence[str], passes: Callable[[Sequence[str]], bool]) -> list[str]:
    """The items that fail ``passes`` on their own, found by bisection.

    ``passes(group)`` checks a group; a failing group is split in halves until
    single items remain. With one culprit among n items this costs about
    2·log2(n) checks instead of n. A group that fails while both halves pass
    (an interaction) yields no culprit; the caller re-checks the whole set.
    """
    if not items or passes(items):
        return []
    if len(items) == 1:
        return [items[0]]
    middle = len(items) // 2
    return find_culprits(items[:middle], passes) + find_culprits(items[middle:], passes)


def admit(items: Sequence[str], passes: Callable[[Sequence[str]], bool]) -> tuple[list[str], list[str]]:
    """Split ``items`` into admitted and refused so that ``passes(admitted)`` holds.

    For failures that only show together (two customers whose server blocks clash):
    groups are added to the admitted set while the whole still passes, and a group
    that breaks it is halved until the single items that break it are found.
    ``passes([])`` must hold (the caller checks the last-known-good set first).
    """
    admitted: list[str] = []
    refused: list[str] = []

    def go(group: Sequence[str]) -> None:
        if not group:
            return
        if passes(admitted + list(group)):
            admitted.extend(group)
        elif len(group) == 1:
            refused.append(group[0])
        else:
            middle = len(group) // 2
            go(group[:middle])
            go(group[middle:])

    go(items)
    return admitted, refused


def restrict(plan: Plan, old: Manifest, held: Iterable[str]) -> Plan:
    """``plan`` without the creations and rewrites of the ``held`` customers.

    Their manifest entries stay what they were (the live, last-known-good files),
    and files they never had stay out of the manifest.
    """
    held = set(held)
    if not held:
        return plan
    keep, dropped = [], []
    for change in plan.changes:
        (dropped if change.customer in held and change.action != "delete" else keep).append(change)
    files = dict(plan.manifest.files)
    for change in dropped:
        before = old.files.get(change.path)
        if before is None:
            files.pop(change.path, None)
        else:
            files[change.path] = replace(before, previous=None)
    return Plan(tuple(keep), plan.conflicts, Manifest(files), plan.unchanged)


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
