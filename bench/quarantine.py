"""What per-customer quarantine costs: vetting N customers with the real `nginx -t`.

In-process, against a generated inventory (bench.common.Inventory): the time of
``vetting.vet`` (read-back of every changed vassal plus the `nginx -t` calls)
and how many `nginx -t` calls it made, for

- the first apply of N customers, all good (one call on the whole set);
- the first apply of N customers, one of them with a domain nginx rejects
  (190 characters: "could not build server_names_hash"), found by bisection;
- one changed customer among N live ones, and that change bad;

against the cost of checking every customer alone (one call per customer,
estimated from the median single-customer call). Medians of RUNS runs.
Run: ``.venv/bin/python bench/quarantine.py`` (HOSTCTL_BENCH_SCALE=0.1 for a quick run).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Inventory, median, save, scaled, table, timed  # noqa: E402
from hostctl.engine import apply, dirs, nginx, pipeline, vetting  # noqa: E402
from hostctl.plan.manifest import Manifest  # noqa: E402
from hostctl.engine.core import runtime  # noqa: E402

RUNS = 3
LONG = ".".join(["a" * 60] * 3) + ".example"


def _vet(inv: Inventory) -> tuple[float, int, int]:
    prepared = pipeline.prepare(inv.inventory, host_checks=False)
    owners = prepared.owners  # the directories, as apply makes them first
    records, host = apply.runtime_records(prepared.inventory, owners.identity.per_customer, owners.root, owners.identity.nginx_group, None)
    runtime.ensure_base(host.dirs)
    runtime.ensure_dirs(host.shared + tuple(d for r in records for d in r.dirs))
    calls = []

    def check(blocks):
        calls.append(len(blocks))
        return nginx.check(prepared.inventory.settings, prepared.env, blocks)

    seconds, (_plan, rejections) = timed(lambda: vetting.vet(prepared, Manifest(), check))
    return seconds, len(calls), len(rejections)


def _bad(inv: Inventory, name: str) -> None:
    path = inv.write_customer(name)
    path.write_text(path.read_text().replace(f"www.{name}.example", LONG))


def main() -> list[dict]:
    n = scaled(1000, 10)
    rows = []
    inv = Inventory(n)
    try:
        prepared = pipeline.prepare(inv.inventory, host_checks=False)
        one = {k: v for k, v in list((p.rsplit("/", 1)[1], f.content) for p, f in prepared.desired.items() if f.kind == "nginx")[:1]}
        single = median([timed(lambda: nginx.check(prepared.inventory.settings, prepared.env, one))[0] for _ in range(5)])
        good = [_vet(inv) for _ in range(RUNS)]
        _bad(inv, inv.name(n // 2))
        bad = [_vet(inv) for _ in range(RUNS)]
        inv.write_customer(inv.name(n // 2))
        apply.apply(str(inv.inventory), 10)
        _bad(inv, inv.name(n // 3))
        changed = [_vet(inv) for _ in range(RUNS)]
    finally:
        inv.cleanup()
    for label, runs in ((f"vet first apply of {n}, all good", good), (f"vet first apply of {n}, 1 bad", bad),
                        (f"vet 1 bad change among {n} live", changed)):
        rows.append({"what": label, "value": f"{median([r[0] for r in runs]):.2f} s, {runs[0][1]} nginx -t calls, "
                                              f"{runs[0][2]} quarantined"})
    rows.append({"what": f"one nginx -t per customer ({n} x median {single * 1000:.1f} ms)", "value": f"{single * n:.2f} s"})
    save("quarantine", rows)
    return rows


if __name__ == "__main__":
    print(table(main()))
