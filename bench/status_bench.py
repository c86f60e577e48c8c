"""Benchmark: how long `hostctl status` takes on a real Emperor + nginx.

An inventory of RUNNING always-on customers (each one vassal: master + 1
worker) plus SLEEPING on-demand customers (their stats sockets do not exist,
which is the cheap failure), served by `hostctl serve`. Reported, as medians
of RUNS:
- `hostctl status --json --cpu-interval 0` as a process (what a monitoring check pays),
- one snapshot in-process (``status_snapshot.take``: the collectors plus the pure rows),
- the same with the default 0.5 s CPU window, to show that window is the floor.

Run: `.venv/bin/python bench/status_bench.py` (HOSTCTL_BENCH_SCALE=0.1 for a quick run).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Inventory, median, save, scaled, table, timed  # noqa: E402
from hostctl.inventory import loader as inventory_mod  # noqa: E402
from hostctl.status import rows as status, snapshot as status_snapshot
from tests.harness import Server, free_port, wait_for  # noqa: E402

RUNS = 5
TARGET_SECONDS = 2.0  # a status of every app on a server must be quick enough for a 10 s health-check interval


def main() -> list[dict]:
    running, sleeping = scaled(20, 2), scaled(1000, 10)
    inv = Inventory(running + sleeping, port=free_port())
    for i in range(running, running + sleeping):
        inv.write_customer(inv.name(i), app={"processes": 1, "on_demand": True, "idle": 300})
    server = None
    try:
        server = Server(inv)  # type: ignore[arg-type]  # a bench Inventory has what Server needs
        inv.hostctl("apply")
        loaded = inventory_mod.load(inv.inventory)
        apps = loaded.apps()

        def states() -> dict[str, int]:
            counts: dict[str, int] = {}
            for row in status_snapshot.take(loaded, apps, [], 0).rows:
                counts[row.state] = counts.get(row.state, 0) + 1
            return counts

        wait_for(lambda: states() == {"running": running, "idle": sleeping}, timeout=120, interval=0.5,
                 what=f"{running} running and {sleeping} idle apps")
        cli = []
        for _ in range(RUNS):
            seconds, proc = timed(lambda: inv.hostctl("status", "--json", "--cpu-interval", "0"))
            assert len(json.loads(proc.stdout)["apps"]) == running + sleeping
            cli.append(seconds)
        inproc = [timed(lambda: status_snapshot.take(loaded, apps, [], 0))[0] for _ in range(RUNS)]
        windowed = [timed(lambda: status_snapshot.take(loaded, apps, [], 0.5))[0] for _ in range(RUNS)]
        rows_per_s = len(apps) / median(inproc)
        assert status.healthy(status_snapshot.take(loaded, apps, [], 0).rows)
    finally:
        if server is not None:
            server.stop()
        inv.cleanup()
    apps_n = running + sleeping
    rows = [
        {"what": f"`hostctl status --json --cpu-interval 0`, {apps_n} apps ({running} running, {sleeping} on-demand asleep), "
                 f"median of {RUNS}", "value": f"{median(cli):.2f} s", "target": f"< {TARGET_SECONDS:g} s",
         "met": median(cli) < TARGET_SECONDS},
        {"what": f"one status snapshot in-process, {apps_n} apps, median of {RUNS}",
         "value": f"{median(inproc) * 1000:.0f} ms ({rows_per_s:.0f} apps/s)"},
        {"what": f"the same with the default 0.5 s CPU window, median of {RUNS}", "value": f"{median(windowed):.2f} s"},
    ]
    save("status", rows)
    return rows


if __name__ == "__main__":
    print(table(main()))
