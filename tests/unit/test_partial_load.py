"""Partial failure is per customer: a broken customer file holds back that customer alone.

Data cases in cases/partial_load.yaml: which customers load, which are held back
with which problems (file, line, field, reason), and which problems are shared
and stop the whole run.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from hostctl.engine import pipeline
from hostctl.errors import InventoryError
from hostctl.inventory import loader as inventory
from hostctl.plan import quarantine
from hostctl.plan.diff import Change, Plan
from hostctl.plan.manifest import Entry, Manifest
from tests.unit.test_validation import write_inventory

CASES = yaml.safe_load((Path(__file__).parent / "cases" / "partial_load.yaml").read_text())
SETTINGS = 'isolation: {users: invoker}\ncgroup: {mode: "off"}\n'


def _load(root: Path, case: dict) -> inventory.Inventory:
    if case.get("checked"):
        return pipeline.load_checked(root)[0]
    return inventory.load(root, partial=True)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_partial_load(tmp_path: Path, case: dict) -> None:
    root = write_inventory(tmp_path / "inv", case.get("settings", SETTINGS), case.get("customers", {}))
    for rel, text in (case.get("files") or {}).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text.replace("ROOT", str(root)))
    if "fatal" in case:
        with pytest.raises(InventoryError) as caught:
            _load(root, case)
        got = [str(p) for p in caught.value.problems]
        assert got == case["fatal"], "\nGOT:\n  " + "\n  ".join(got)
        return
    inv = _load(root, case)
    got = {name: [str(p) for p in problems] for name, problems in inv.held.items()}
    want = {name: [line.replace("ROOT", str(root)) for line in lines] for name, lines in case["held"].items()}
    assert set(got) == set(want), got
    for name, lines in want.items():  # a reason may go on (YAML's own message): compare the start
        assert len(got[name]) == len(lines) and all(g.startswith(w) for g, w in zip(got[name], lines)), got[name]
    assert [c.name for c in inv.customers] == case["loaded"]
    with pytest.raises(InventoryError):  # the strict load still refuses the whole inventory
        inventory.load(root) if not case.get("checked") else pipeline.load_checked(root, partial=False)


def test_keep_live_leaves_a_held_customers_files_alone() -> None:
    """The plan of an inventory without the held customer would remove its files: keep_live keeps them."""
    old = Manifest({"/v/broken_web.ini": Entry("h1", "vassal", "broken", "web"),
                    "/v/good_web.ini": Entry("h2", "vassal", "good", "web")})
    changes = (Change("delete", "/v/broken_web.ini", "vassal", "broken", "web", "old", None),
               Change("update", "/v/good_web.ini", "vassal", "good", "web", "a", "b", 0o640))
    plan = Plan(changes, (), Manifest({"/v/good_web.ini": Entry("h3", "vassal", "good", "web")}))
    kept = quarantine.keep_live(plan, old, {"broken": ()})
    assert [c.path for c in kept.changes] == ["/v/good_web.ini"]
    assert kept.manifest.files == {"/v/broken_web.ini": Entry("h1", "vassal", "broken", "web"),
                                   "/v/good_web.ini": Entry("h3", "vassal", "good", "web")}
    assert quarantine.keep_live(plan, old, {}) is plan
