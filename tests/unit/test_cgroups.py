"""cgroup decisions are pure: host facts and limits in, directories, limit writes and vassal lines out.

Cases live in cases/cgroups.yaml; planning against live values and the
/proc/self/mounts parser are tested here directly.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from hostctl.inventory.schema import CgroupSettings, Limits
from hostctl.render import cgroups
from hostctl.render.cgroups import CgroupChange, Facts, Hierarchy, Write

CASES = yaml.safe_load((Path(__file__).parent / "cases" / "cgroups.yaml").read_text())


def _facts(data: dict) -> Facts:
    return Facts(data["root"], data.get("v1", {}), data.get("v2_root"), frozenset(data.get("v2_controllers", [])))


def _hierarchy(data: dict) -> Hierarchy:
    return Hierarchy(data["version"], data.get("parent", "hostctl"), data.get("v1", {}), data.get("v2_root"),
                     frozenset(data.get("controllers", [])), data.get("why_off"), data.get("memory_budget"))


@pytest.mark.parametrize("case", CASES["decide"], ids=[c["name"] for c in CASES["decide"]])
def test_decide(case: dict) -> None:
    h, errors = cgroups.decide(CgroupSettings(**case["cfg"]), _facts(case["facts"]), case.get("per_customer", True))
    want = case["want"]
    assert h.version == want["version"]
    if "controllers" in want:
        assert h.controllers == frozenset(want["controllers"])
    if "why_off" in want:
        assert h.why_off == want["why_off"]
    if "parent" in want:
        assert h.parent == want["parent"]
    assert h.memory_budget == (want.get("memory_budget") if h.version else None)
    assert (h.why_off is None) == (h.version is not None)
    assert errors == case.get("errors", [])


@pytest.mark.parametrize("case", CASES["customer"], ids=[c["name"] for c in CASES["customer"]])
def test_customer_cgroup(case: dict) -> None:
    h = _hierarchy(case["hierarchy"])
    cg = cgroups.customer_cgroup(h, "acme", Limits(**case["limits"]))
    assert list(cg.dirs) == case["dirs"]
    assert [[w.path, w.value] for w in cg.writes] == case["writes"]
    assert [list(line) for line in cgroups.vassal_lines(h, "acme")] == case["vassal"]
    assert list(cg.notes) == case.get("notes", [])


def test_mounts_are_parsed_including_joined_controllers() -> None:
    mounts = (
        "cgroup /sys/fs/cgroup/cpu,cpuacct cgroup rw,nosuid,cpu,cpuacct 0 0\n"
        "cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0\n"
        "cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0\n"
        "tmpfs /sys/fs/cgroup tmpfs rw 0 0\n"
    )
    assert cgroups.v1_mounts(mounts) == {"cpu": "/sys/fs/cgroup/cpu,cpuacct", "memory": "/sys/fs/cgroup/memory"}
    assert cgroups.v2_mount(mounts) == "/sys/fs/cgroup/unified"
    # settings override the mounts (how tests point hostctl at a fake tree)
    v1, v2 = cgroups.locate(CgroupSettings(v1_root="/fake", v2_root="/fake2"), mounts)
    assert v1 == {"memory": "/fake/memory", "cpu": "/fake/cpu", "pids": "/fake/pids"} and v2 == "/fake2"


def test_plan_writes_only_what_differs_and_removes_departed_customers() -> None:
    h = _hierarchy({"version": "v1", "v1": {"memory": "/m", "pids": "/p"}, "controllers": ["memory", "pids"]})
    desired = [cgroups.customer_cgroup(h, "acme", Limits(memory=64 << 20, pids=64))]
    live = {
        "/m/hostctl": "", "/m/hostctl/acme": "", "/p/hostctl": "", "/p/hostctl/acme": None,
        "/m/hostctl/memory.limit_in_bytes": "9223372036854771712\n",  # the parent: no budget, as wanted
        "/m/hostctl/acme/memory.limit_in_bytes": "134217728\n", "/m/hostctl/acme/memory.swappiness": "0\n",
        "/p/hostctl/acme/pids.max": None,
    }
    changes = cgroups.plan(desired, live, ["/m/hostctl/acme", "/m/hostctl/gone"])
    assert changes == (
        CgroupChange("mkdir", "/p/hostctl/acme"),
        CgroupChange("write", "/m/hostctl/acme/memory.limit_in_bytes", "134217728\n", "67108864"),
        CgroupChange("write", "/p/hostctl/acme/pids.max", None, "64"),
        CgroupChange("rmdir", "/m/hostctl/gone"),
    )
    assert cgroups.render_changes(changes).splitlines() == [
        "+ cgroup /p/hostctl/acme",
        "~ cgroup /m/hostctl/acme/memory.limit_in_bytes: 134217728 -> 67108864",
        "~ cgroup /p/hostctl/acme/pids.max: (new) -> 64",
        "- cgroup /m/hostctl/gone",
    ]


@pytest.mark.parametrize(("write", "current", "same"), [
    (Write("x/memory.limit_in_bytes", "-1"), "9223372036854771712\n", True),  # v1's "no limit"
    (Write("x/memory.limit_in_bytes", "-1"), "67108864\n", False),
    (Write("x/cpu.cfs_quota_us", "-1"), "-1\n", True),
    (Write("x/pids.max", "max"), "max\n", True),
    (Write("x/cgroup.subtree_control", "+cpu +memory", enable=True), "cpu io memory pids\n", True),
    (Write("x/cgroup.subtree_control", "+cpu +memory", enable=True), "memory\n", False),
    (Write("x/cpu.max", "50000 100000"), None, False),
])
def test_satisfied(write: Write, current: str | None, same: bool) -> None:
    assert cgroups.satisfied(write, current) is same
