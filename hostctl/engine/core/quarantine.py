"""Per-customer quarantine decisions: who is at fault, found by bisection. Pure.

One customer's broken output must never block the others (piku#62, dokku#1581,
caprover#412). ``vetting.py`` runs the checks; ``find_culprits`` narrows a
failing set of customers down by bisection (given any pass/fail check), and
``admit`` finds a passing set when failures only show together.
``plan.restrict`` then drops a held customer's changes, so its last-known-good
files stay live.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence


@dataclass(frozen=True, order=True)
class Rejection:
    """Why one customer's new files were held back."""

    customer: str
    file: str  # the rendered file at fault (or the customer's files, comma-separated)
    reason: str

    def __str__(self) -> str:
        return f"{self.customer}: {self.file}: {self.reason}"


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
