"""One customer's change writes exactly that customer's files: no other file's content or mtime moves.

The correctness half of the apply-at-scale benchmark (bench/apply_scale.py), at a small scale.
"""

from __future__ import annotations

import os

import pytest

from tests.harness import Sandbox

pytestmark = pytest.mark.integration


def _written(before: dict[str, int], after: dict[str, int]) -> set[str]:
    """Files whose mtime moved, and files that vanished; new files only in the live directories
    (apply may add records of its own under state/, such as generations)."""
    moved = {p for p in after if p in before and after[p] != before[p]} | (set(before) - set(after))
    return moved | {p for p in set(after) - set(before) if "/state/" not in p}


def _mtimes(box: Sandbox) -> dict[str, int]:
    out = {}
    for top in ("vassals", "nginx", "state"):
        for dirpath, _dirs, names in os.walk(box.path(top)):
            for name in names:
                if name != "apply.lock":  # holds the pid of the last apply, not configuration
                    path = os.path.join(dirpath, name)
                    out[path] = os.stat(path).st_mtime_ns
    return out


def test_one_change_writes_only_that_customers_files(sandbox: Sandbox) -> None:
    names = [f"c{i}" for i in range(8)]
    for name in names:
        sandbox.write_customer(name, {"apps": {"web": sandbox.echo_app([f"{name}.example", f"www.{name}.example"],
                                                                        env={"CUSTOMER": name}),
                                               "od": sandbox.echo_app([f"od.{name}.example"], on_demand=True)}})
    sandbox.hostctl("apply")
    vassals, nginx, state = sandbox.path("vassals"), sandbox.path("nginx"), sandbox.path("state")

    # An env change: only c3's web vassal (and the manifest) is written.
    before = _mtimes(sandbox)
    sandbox.write_customer("c3", {"apps": {"web": sandbox.echo_app(["c3.example", "www.c3.example"], env={"CUSTOMER": "other"}),
                                           "od": sandbox.echo_app(["od.c3.example"], on_demand=True)}})
    assert "1 changed" in sandbox.hostctl("apply").stdout
    after = _mtimes(sandbox)
    assert _written(before, after) == {str(vassals / "c3_web.ini"), str(state / "manifest.json")}

    # A domain change: that app's server block only (its vassal does not change).
    before = after
    sandbox.write_customer("c5", {"apps": {"web": sandbox.echo_app(["c5.example", "new.c5.example"], env={"CUSTOMER": "c5"}),
                                           "od": sandbox.echo_app(["od.c5.example"], on_demand=True)}})
    sandbox.hostctl("apply")
    after = _mtimes(sandbox)
    assert _written(before, after) == {str(nginx / "c5_web.conf"), str(state / "manifest.json")}

    # Nothing changed: nothing is written at all, not even the manifest.
    before = after
    assert "No changes" in sandbox.hostctl("apply").stdout
    assert _written(before, _mtimes(sandbox)) == set()
