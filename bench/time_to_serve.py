"""Benchmark 2: time to serve a new customer, with a real Emperor and nginx (`hostctl serve`).

From the start of `hostctl apply` that adds one customer to its first 200
through nginx; median of 10, on a server with a handful of customers and on
one with 1,000 (on-demand, so that they fit in memory; the nginx check and
reload over 1,000 server blocks dominate there). Both the CLI (a fresh Python
process: ~0.2 s of start-up and imports) and in-process (``hostctl.engine.apply.apply``)
are measured, alternately.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import REPO, Inventory, median, save, scaled, table, until_ok  # noqa: E402
from hostctl.engine import apply as apply_mod  # noqa: E402
from tests.harness import Server, free_port  # noqa: E402

NEW_APP = {"processes": 1}


def measure(background: int, runs: int) -> dict:
    app = {"processes": 1, "on_demand": True, "idle": 600} if background > 20 else {"processes": 1}
    inv = Inventory(background, port=free_port(), app=app)
    try:
        inv.hostctl("apply")
        server = Server(inv)
        try:
            until_ok(inv.port, f"{inv.name(0)}.example")
            cli, inproc = [], []
            for i in range(runs):
                for mode in ("cli", "inproc"):
                    name = f"new-{mode}-{i}"
                    inv.write_customer(name, app=NEW_APP)
                    start = time.monotonic()
                    if mode == "cli":
                        inv.hostctl("apply")
                    else:
                        apply_mod.apply(str(inv.inventory), 30)
                    served = until_ok(inv.port, f"{name}.example")
                    (cli if mode == "cli" else inproc).append(served - start)
        finally:
            server.stop()
        return dict(background=background, cli=median(cli), inproc=median(inproc), cli_all=cli, inproc_all=inproc)
    finally:
        inv.cleanup()


def main() -> list[dict]:
    runs = scaled(10, 3)
    rows = []
    for background, target in ((5, 0.1), (scaled(1000, 50), 1.5)):
        r = measure(background, runs)
        print(f"  time_to_serve: {r}", file=sys.stderr)
        rows.append(dict(what=f"time to serve a new customer, {background} customers (CLI apply, median of {runs})",
                         value=f"{r['cli']:.3f} s", target=f"< {target} s", met=r["cli"] < target))
        rows.append(dict(what=f"time to serve a new customer, {background} customers (in-process apply, median of {runs})",
                         value=f"{r['inproc']:.3f} s", target=f"< {target} s", met=r["inproc"] < target))
    save("time_to_serve", rows)
    return rows


if __name__ == "__main__":
    print(table(main()))
