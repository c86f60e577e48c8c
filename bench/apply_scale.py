"""Benchmark 1: `hostctl apply` at scale, against the bare-Jinja2 floor.

For 1,000 and 10,000 generated customers (1 app, 2 domains each, invoker
mode, no Emperor or nginx running): first apply, no-change apply and
one-customer-changed apply, as CLI wall time (a fresh `python -m hostctl`,
imports included) and in-process (``hostctl.engine.apply.apply`` called in this
process). The floor is Jinja2 rendering the same two templates for every app
with the contexts prepared beforehand, and nothing else. A one-customer change
is checked to write exactly that customer's vassal (plus the manifest) and to
leave every other file's mtime alone.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Inventory, files_state, median, raise_fd_limit, save, scaled, table, timed  # noqa: E402
from hostctl.engine import apply as apply_mod, pipeline  # noqa: E402
from hostctl.render import templates


def floor(root: Path, runs: int) -> float:
    """Median seconds for Jinja2 alone to render every template apply renders, with the very contexts
    hostctl passes (recorded during one real render, so the floor follows the templates as they change)."""
    captured: list[tuple] = []
    real = templates.render

    def record(template, **context):  # type: ignore[no-untyped-def]
        captured.append((template, context))
        return real(template, **context)

    templates.render = record
    try:
        pipeline.prepare(root)
    finally:
        templates.render = real

    def run() -> None:
        for template, context in captured:
            template.render(context)

    return median([timed(run)[0] for _ in range(runs)])


def one_size(customers: int, runs: int) -> dict:
    inv = Inventory(customers, shared_nginx_logs=customers > 5000)
    try:
        root = inv.inventory
        first = []
        first_t, _ = timed(lambda: inv.hostctl("apply"))
        first.append(first_t)
        cli_nochange = []
        for _ in range(runs):
            t, proc = timed(lambda: inv.hostctl("apply"))
            assert "No changes" in proc.stdout, proc.stdout
            cli_nochange.append(t)
        inproc = []
        for _ in range(runs):
            t, result = timed(lambda: apply_mod.apply(str(root), 10))
            assert result.plan.empty
            inproc.append(t)
        # One customer changes: exactly its vassal (and hostctl's manifest) is written.
        victim = inv.name(customers // 2)
        live = [inv.root / "vassals", inv.root / "nginx", inv.root / "state"]
        cli_one, inproc_one, exact = [], [], True
        for i in range(runs):
            before = files_state(*live)
            inv.write_customer(victim, extra_env=f"cli{i}")
            t, _ = timed(lambda: inv.hostctl("apply"))
            cli_one.append(t)
            after = files_state(*live)
            changed = {p for p in after if p in before and before[p] != after[p]} | (set(before) - set(after))
            changed |= {p for p in set(after) - set(before) if "/state/" not in p}  # state/ may gain records (generations)
            changed.discard(str(inv.root / "state" / "apply.lock"))  # the lock holds the pid of the last apply
            want = {str(inv.root / "vassals" / f"{victim}_web.ini"), str(inv.root / "state" / "manifest.json")}
            exact &= changed == want
            inv.write_customer(victim, extra_env=f"inproc{i}")
            t, result = timed(lambda: apply_mod.apply(str(root), 10))
            assert result.plan.count("update") == 1
            inproc_one.append(t)
        jinja = floor(root, runs)
        return dict(customers=customers, first_cli=median(first), nochange_cli=median(cli_nochange),
                    nochange_inproc=median(inproc), one_cli=median(cli_one), one_inproc=median(inproc_one),
                    floor=jinja, one_change_exact=exact)
    finally:
        inv.cleanup()


def rows_for(results: list[dict]) -> list[dict]:
    rows = []
    targets = {1000: 0.3, 10000: 3.0}
    for r in results:
        n = r["customers"]
        target = targets.get(n)
        note = " (nginx logs shared: fd limit, see README)" if n > 5000 else ""
        rows.append(dict(what=f"apply {n} customers: first (CLI){note}", value=f"{r['first_cli']:.2f} s"))
        rows.append(dict(what=f"apply {n}: no change (CLI, incl. ~0.2 s Python start + imports)", value=f"{r['nochange_cli']:.3f} s",
                         target=f"< {target} s" if target else "", met=(r["nochange_cli"] < target) if target else None))
        rows.append(dict(what=f"apply {n}: no change (in-process)", value=f"{r['nochange_inproc']:.3f} s",
                         target=f"< {target} s" if target else "", met=(r["nochange_inproc"] < target) if target else None))
        rows.append(dict(what=f"apply {n}: one customer changed (CLI / in-process)", value=f"{r['one_cli']:.3f} s / {r['one_inproc']:.3f} s"))
        ratio = r["nochange_inproc"] / r["floor"]
        rows.append(dict(what=f"apply {n}: no change in-process / bare Jinja2 rendering ({r['floor']:.3f} s)", value=f"{ratio:.1f}x",
                         target="< 3x", met=ratio < 3))
        rows.append(dict(what=f"apply {n}: one change writes only that customer's vassal + manifest, no other mtime changes",
                         value="yes" if r["one_change_exact"] else "NO", target="yes", met=r["one_change_exact"]))
    if len(results) == 2:
        small, big = results
        growth = (big["nochange_inproc"] / big["customers"]) / (small["nochange_inproc"] / small["customers"])
        rows.append(dict(what=f"no-change cost per customer, {big['customers']} vs {small['customers']} (1.0 = linear)",
                         value=f"{growth:.2f}", target="about 1 (linear)", met=growth < 1.5))
    return rows


def main() -> list[dict]:
    raise_fd_limit()
    sizes = [scaled(1000, 10), scaled(10000, 100)]
    results = []
    for n in sizes:
        results.append(one_size(n, runs=5 if n <= 2000 else 3))
        print(f"  apply_scale: {results[-1]}", file=sys.stderr)
    rows = rows_for(results)
    save("apply_scale", rows)
    return rows


if __name__ == "__main__":
    print(table(main()))
