"""What enforcing limits costs plan and apply: the cgroup part for N customers, on a fake v1 tree.

In-process, against a temporary directory laid out like cgroup v1 (the host's
cgroups are left alone): ``pipeline.prepare`` with ``cgroup.mode: off`` against
``v1`` before any cgroup exists and once they all do (the no-change plan every
apply makes), and the first creation of every cgroup and limit file. Medians of
several runs. Forcing ``v1`` needs root. Run: ``.venv/bin/python bench/cgroup_plan.py``;
with ``--real`` the same runs against the host's own v1 mounts, under
throw-away parents ``hostctl-bench-*`` that are removed afterwards.
"""

from __future__ import annotations

import os
import secrets
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Inventory, median, save, scaled, table, timed  # noqa: E402
from hostctl.engine import isolation, pipeline  # noqa: E402

LIMITS = {"memory": "256M", "cpu": 0.5, "pids": 128}
RUNS = 5


def _fake_tree() -> str:
    root = tempfile.mkdtemp(prefix="hostctl-bench-cg-", dir="/tmp")
    for controller in ("memory", "cpu", "pids"):
        Path(root, controller).mkdir()
    return root


def _remove_real(parents: list[str]) -> None:
    for controller in ("memory", "cpu", "pids"):
        for parent in parents:
            base = f"/sys/fs/cgroup/{controller}/{parent}"
            if os.path.isdir(base):
                for entry in os.scandir(base):
                    if entry.is_dir():
                        os.rmdir(entry.path)
                os.rmdir(base)


def main(real: bool = False) -> list[dict]:
    n = scaled(1000, minimum=10)
    # one cgroup setting per run: a fresh fake tree, or a fresh parent on the host's v1 mounts
    if real:
        tag = secrets.token_hex(3)
        targets = [{"mode": "v1", "parent": f"hostctl-bench-{tag}-{i}"} for i in range(RUNS)]
    else:
        targets = [{"mode": "v1", "v1_root": _fake_tree()} for _ in range(RUNS)]
    limits = {"limits": LIMITS}
    off = Inventory(n, settings={"cgroup": {"mode": "off"}, "defaults": limits})
    v1 = Inventory(n, settings={"cgroup": targets[0], "defaults": limits})
    settings_file = v1.inventory / "hostctl.yaml"
    base_settings = settings_file.read_text()
    first = targets[0].get("v1_root") or targets[0]["parent"]

    def prepare(inv: Inventory) -> pipeline.Prepared:
        return pipeline.prepare(inv.inventory, host_checks=False)

    try:
        t_off = median([timed(lambda: prepare(off))[0] for _ in range(RUNS)])
        t_new = median([timed(lambda: prepare(v1))[0] for _ in range(RUNS)])
        creates, changes = [], 0
        for target in targets:
            settings_file.write_text(base_settings.replace(first, target.get("v1_root") or target["parent"]))
            prepared = prepare(v1)
            changes = len(prepared.isolation.changes)
            creates.append(timed(lambda: isolation.execute(prepared.isolation))[0])
        # off and v1 (no change) measured in alternation, so machine load hits both alike
        pairs = [(timed(lambda: prepare(off))[0], timed(lambda: prepare(v1))[0]) for _ in range(RUNS + 2)]
        t_same = median([b for _, b in pairs])
        extra = median([b - a for a, b in pairs])
        assert not prepare(v1).isolation.changes
    finally:
        off.cleanup()
        v1.cleanup()
        if real:
            _remove_real([t["parent"] for t in targets])
        else:
            for target in targets:
                shutil.rmtree(target["v1_root"], ignore_errors=True)
    where = "host v1" if real else "fake v1 tree"
    rows = [
        {"benchmark": "cgroup_plan", "what": f"prepare, {n} customers, cgroup off", "value": f"{t_off * 1000:.0f} ms"},
        {"benchmark": "cgroup_plan", "what": f"prepare, {n} customers, {where}, no cgroups yet", "value": f"{t_new * 1000:.0f} ms"},
        {"benchmark": "cgroup_plan", "what": f"create {changes} cgroup dirs and limit writes ({where})", "value": f"{median(creates) * 1000:.0f} ms"},
        {"benchmark": "cgroup_plan", "what": f"prepare, {n} customers, {where}, no change", "value": f"{t_same * 1000:.0f} ms"},
        {"benchmark": "cgroup_plan", "what": "  of which cgroups (paired with off, median difference)", "value": f"{extra * 1000:.0f} ms"},
    ]
    save("cgroup_plan_real" if real else "cgroup_plan", rows)
    return rows


if __name__ == "__main__":
    print(table(main(real="--real" in sys.argv[1:])))
