"""On-demand apps: which vassals must be retired because their on-demand mode flips (pure)."""

from __future__ import annotations

import pytest

from hostctl.plan.diff import Change, Plan
from hostctl.plan.manifest import Manifest
from hostctl.render import ondemand

V = "/e/acme_web.ini"
S = V + ".socket"


def change(action: str, path: str, kind: str) -> Change:
    return Change(action, path, kind, "acme", "web", None if action == "create" else "x", None if action == "delete" else "y")


@pytest.mark.parametrize("changes, expected", [
    # an existing always-on vassal becomes on-demand, and back
    ([change("update", V, "vassal"), change("create", S, "socket")], [V]),
    ([change("update", V, "vassal"), change("delete", S, "socket")], [V]),
    # a companion lost by hand while the vassal is unchanged: the vassal is re-added with it
    ([change("create", S, "socket")], [V]),
    # new or departing apps need no retiring
    ([change("create", V, "vassal"), change("create", S, "socket")], []),
    ([change("delete", V, "vassal"), change("delete", S, "socket")], []),
    # an on-demand app whose settings change keeps its companion: a graceful reload
    ([change("update", V, "vassal")], []),
    # its socket moved (run_dir changed, or the upgrade to root's run_dir/ondemand/): the Emperor binds the
    # companion's socket only when it first sees the vassal, so it is retired and added again
    ([change("update", V, "vassal"), change("update", S, "socket")], [V]),
])
def test_toggled(changes: list[Change], expected: list[str]) -> None:
    assert ondemand.toggled(Plan(tuple(changes), (), Manifest())) == expected


def test_wait_released_polls_until_the_emperor_lets_go() -> None:
    answers = iter([{"vassals": [{"id": "acme_web.ini"}, {"id": "b.ini"}]}, {"vassals": [{"id": "b.ini"}]}])
    seen = []

    def read(address: str):
        seen.append(address)
        return next(answers)

    assert ondemand.wait_released(read, "/run/emperor.stats", [V])
    assert seen == ["/run/emperor.stats"] * 2
    assert ondemand.wait_released(lambda _: None, "/x", [V])  # no Emperor running: nothing holds it
    assert not ondemand.wait_released(lambda _: {"vassals": [{"id": "acme_web.ini"}]}, "/x", [V], timeout=0.1)
