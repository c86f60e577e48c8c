"""`make bench`: run the four benchmarks and print one table.

HOSTCTL_BENCH_SCALE=0.1 shrinks every size (customers, runs, durations) for a
quick run. Each benchmark also writes its rows to bench/results/NAME.json, and
the combined table goes to bench/results/summary.md (gitignored; the figures
worth keeping are copied into bench/README.md by hand, with the machine).
"""

from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import apply_scale, density, request_path, time_to_serve  # noqa: E402
from bench.common import RESULTS, scale, table  # noqa: E402


def machine() -> str:
    import psutil

    return (f"{platform.node()}: {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GB RAM, "
            f"{platform.platform()}, Python {platform.python_version()}, scale {scale()}")


def main() -> int:
    rows = []
    for module in (apply_scale, time_to_serve, density, request_path):
        name = module.__name__.rsplit(".", 1)[-1]
        print(f"running {name} ...", file=sys.stderr, flush=True)
        start = time.monotonic()
        rows += module.main()
        print(f"  {name} took {time.monotonic() - start:.0f} s", file=sys.stderr, flush=True)
    text = f"{machine()}\n\n{table(rows)}\n"
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "summary.md").write_text(text)
    print(text)
    missed = [row["what"] for row in rows if row.get("met") is False]
    if missed:
        print(f"{len(missed)} target(s) not met (see bench/README.md for why).", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
