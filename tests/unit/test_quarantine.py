"""Quarantine decisions are pure: bisection over any check, and the plan restricted to good customers."""

from __future__ import annotations

import pytest

from hostctl.plan.diff import Change, Plan
from hostctl.plan.manifest import Entry, Manifest, sha256
from hostctl.plan.quarantine import Rejection, admit, changed_customers, find_culprits, report, restrict


@pytest.mark.parametrize(("count", "bad", "max_calls"), [
    (0, set(), 0),
    (1, set(), 1),
    (1, {0}, 1),
    (8, {3}, 7),  # 1 + 2·log2(8)
    (1000, {999}, 21),
    (1000, {1, 500, 998}, 60),
    (5, {0, 1, 2, 3, 4}, 9),
])
def test_find_culprits_by_bisection(count: int, bad: set[int], max_calls: int) -> None:
    items = [f"c{i:04d}" for i in range(count)]
    culprits = {items[i] for i in bad}
    calls = []

    def passes(group):
        calls.append(len(group))
        return not (set(group) & culprits)

    assert sorted(find_culprits(items, passes)) == sorted(culprits)
    assert len(calls) <= max_calls, calls


def test_interaction_yields_no_culprit() -> None:
    """A pair that only fails together: the halves pass, so the caller must re-check the set."""
    assert find_culprits(["a", "b"], lambda group: len(group) < 2) == []


@pytest.mark.parametrize(("clashes", "refused"), [
    ([], []),
    ([{"b", "c"}], ["c"]),
    ([{"a", "h"}, {"d"}], ["d", "h"]),
    ([{"a", "b", "c"}], ["c"]),  # fails only with all three
])
def test_admit_keeps_the_largest_set_that_passes(clashes: list[set[str]], refused: list[str]) -> None:
    items = list("abcdefgh")

    def passes(group):
        return not any(clash <= set(group) for clash in clashes)

    admitted, got = admit(items, passes)
    assert sorted(got) == refused and passes(admitted) and sorted(admitted + got) == items


def _change(action: str, customer: str, path: str, before: str | None, after: str | None) -> Change:
    return Change(action, path, "nginx", customer, "web", before, after, 0o644 if after else None)


def _plan(changes: list[Change], files: dict[str, Entry]) -> Plan:
    return Plan(tuple(changes), (), Manifest(files), 0)


def test_restrict_keeps_held_customers_on_last_known_good() -> None:
    old = Manifest({"/n/a.conf": Entry(sha256("a1"), "nginx", "a", "web"),
                    "/n/b.conf": Entry(sha256("b1"), "nginx", "b", "web")})
    changes = [
        _change("update", "a", "/n/a.conf", "a1", "a2"),
        _change("update", "b", "/n/b.conf", "b1", "b2"),
        _change("create", "c", "/n/c.conf", None, "c1"),
        _change("delete", "b", "/n/b_old.conf", "old", None),
    ]
    new_files = {"/n/a.conf": Entry(sha256("a2"), "nginx", "a", "web"), "/n/b.conf": Entry(sha256("b2"), "nginx", "b", "web"),
                 "/n/c.conf": Entry(sha256("c1"), "nginx", "c", "web")}
    plan = restrict(_plan(changes, new_files), old, {"b", "c"})
    assert [(c.customer, c.action) for c in plan.changes] == [("a", "update"), ("b", "delete")]
    assert plan.manifest.files["/n/a.conf"].sha256 == sha256("a2")
    assert plan.manifest.files["/n/b.conf"].sha256 == sha256("b1")  # still the live, last-known-good file
    assert "/n/c.conf" not in plan.manifest.files  # never had good files: stays absent
    assert changed_customers(_plan(changes, new_files)) == ["a", "b", "c"]


def test_restrict_nothing_held_is_the_same_plan() -> None:
    plan = _plan([_change("create", "a", "/n/a.conf", None, "x")], {})
    assert restrict(plan, Manifest(), set()) is plan


def test_report_names_customer_file_and_reason() -> None:
    text = report([Rejection("b", "/n/b.conf", "nginx -t: boom"), Rejection("a", "/e/a.ini", "env: wrong")])
    assert text.splitlines() == [
        "2 customer(s) quarantined; their last-known-good files stay live:",
        "  a: /e/a.ini: env: wrong",
        "  b: /n/b.conf: nginx -t: boom",
    ]
