"""Benchmark 3: density with on-demand customers.

With N on-demand customers (2,000, and 10,000):
- total RSS of the Emperor and everything it runs while every customer sleeps,
- the Emperor's CPU use while idle, watching N vassal files, for emperor.freq 1 and 3,
(both with the Emperor alone, started from the ini `hostctl serve` renders: nginx
would need two log files per app, which at 10,000 exceeds this machine's fd limit).
With 2,000 and `hostctl serve` (Emperor + nginx):
- cold start: one sleeping customer's first request through nginx (median of 10 customers),
- 50 sleeping customers woken at once (50 concurrent first requests),
- after the idle timeout every woken vassal is gone again (no process left but the Emperor).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Inventory, median, raise_fd_limit, request, save, scaled, table  # noqa: E402
from hostctl.cli import serve as serve_mod
from hostctl.engine import emperor, pipeline  # noqa: E402
from hostctl.render import layout, templates
from tests.harness import Server, free_port, wait_for  # noqa: E402

IDLE = 5  # seconds: short, so that the bench sees vassals go back to sleep
CPU_WINDOW = 10.0


def _tree_rss(pid: int) -> int:
    root = psutil.Process(pid)
    procs = [root] + root.children(recursive=True)
    return sum(p.memory_info().rss for p in procs if p.status() != psutil.STATUS_ZOMBIE)


def _running_vassals(pid: int) -> int:
    return sum(1 for p in psutil.Process(pid).children() if p.status() != psutil.STATUS_ZOMBIE)


def _listed(stats_path: str) -> int:
    stats = emperor.read_stats(stats_path)
    return len(stats["vassals"]) if stats else 0


def emperor_alone(inv: Inventory, customers: int, freq: int) -> dict:
    """Start only the Emperor for the inventory; RSS and idle CPU once it holds every socket."""
    loaded, owners = pipeline.load_checked(inv.inventory, host_checks=False)
    settings = loaded.settings.model_copy(update={"emperor": loaded.settings.emperor.model_copy(update={"freq": freq})})
    loaded = type(loaded)(loaded.root, settings, loaded.customers, loaded.sources)
    ini, _ = serve_mod.write_configs(loaded, owners, templates.environment(loaded.root))
    stats = layout.emperor_stats(settings)
    proc = subprocess.Popen([settings.emperor.binary, "--ini", ini], start_new_session=True,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        start = time.monotonic()
        wait_for(lambda: _listed(stats) == customers, timeout=300, interval=0.2, what="the Emperor to hold every socket")
        ready = time.monotonic() - start
        time.sleep(2)
        assert _running_vassals(proc.pid) == 0
        rss = _tree_rss(proc.pid)
        emperor_proc = psutil.Process(proc.pid)
        before = emperor_proc.cpu_times()
        time.sleep(CPU_WINDOW)
        after = emperor_proc.cpu_times()
        cpu = (after.user + after.system - before.user - before.system) / CPU_WINDOW * 100
        return dict(customers=customers, freq=freq, rss_mb=rss / 2**20, cpu_percent=cpu, ready_s=ready)
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def wake(inv: Inventory, customers: int) -> dict:
    """Cold starts through nginx, 50 at once, and the return to sleep, with `hostctl serve`."""
    server = Server(inv)
    try:
        pid = int((inv.root / "run" / "serve" / "emperor.pid").read_text())
        stats = str(inv.root / "run" / "emperor.stats")
        wait_for(lambda: _listed(stats) == customers, timeout=300, interval=0.2, what="the Emperor to hold every socket")
        cold = []
        for i in range(10):
            host = f"{inv.name(i)}.example"
            start = time.monotonic()
            status = request(inv.port, host)
            cold.append(time.monotonic() - start)
            assert status == 200, (host, status)
        hosts = [f"{inv.name(i)}.example" for i in range(100, 150)]

        def one(host: str) -> tuple[int, float]:
            start = time.monotonic()
            status = request(inv.port, host, timeout=60)
            return status, time.monotonic() - start

        start = time.monotonic()
        with ThreadPoolExecutor(len(hosts)) as pool:
            results = list(pool.map(one, hosts))
        burst = time.monotonic() - start
        ok = sum(1 for status, _ in results if status == 200)
        running = _running_vassals(pid)
        rss_awake = _tree_rss(pid)
        last_request = time.monotonic()
        wait_for(lambda: _running_vassals(pid) == 0, timeout=IDLE + 60, interval=0.2, what="every vassal to sleep again")
        asleep_after = time.monotonic() - last_request
        rss_asleep = _tree_rss(pid)
        again = request(inv.port, hosts[0])
        return dict(cold_median=median(cold), cold_max=max(cold), burst_wall=burst, burst_ok=ok,
                    burst_median=median([t for _, t in results]), burst_max=max(t for _, t in results),
                    running_after_burst=running, rss_awake_mb=rss_awake / 2**20, asleep_after=asleep_after,
                    rss_asleep_mb=rss_asleep / 2**20, woke_again=again == 200)
    finally:
        server.stop()


def idle_rows(inv: Inventory, customers: int, rss_target: float | None) -> list[dict]:
    """RSS while all sleep, and the Emperor's idle CPU for emperor.freq 1 and 3."""
    rows = []
    for freq in (1, 3):
        r = emperor_alone(inv, customers, freq)
        print(f"  density: {r}", file=sys.stderr)
        if freq == 1:
            rows.append(dict(what=f"{customers} on-demand customers asleep: RSS of the Emperor and all it runs",
                             value=f"{r['rss_mb']:.1f} MB", target=f"< {rss_target:.0f} MB" if rss_target else "",
                             met=r["rss_mb"] < rss_target if rss_target else None))
        rows.append(dict(what=f"{customers} asleep: Emperor CPU while idle, emperor.freq {freq}",
                         value=f"{r['cpu_percent']:.1f} % of a core"))
    return rows


def main() -> list[dict]:
    raise_fd_limit()
    rows = []
    small, big = scaled(2000, 200), scaled(10000, 200)
    inv = Inventory(small, port=free_port(), app={"processes": 1, "on_demand": True, "idle": IDLE})
    try:
        inv.hostctl("apply")
        rows += idle_rows(inv, small, 200.0)
        w = wake(inv, small)
        print(f"  density: {w}", file=sys.stderr)
        rows.append(dict(what=f"{small} on-demand: cold start of one sleeping customer through nginx (median of 10; max)",
                         value=f"{w['cold_median'] * 1000:.0f} ms; {w['cold_max'] * 1000:.0f} ms", target="< 50 ms",
                         met=w["cold_median"] < 0.05))
        rows.append(dict(what=f"{small} on-demand: 50 woken at once (all answered; wall; median / max latency)",
                         value=f"{w['burst_ok']}/50; {w['burst_wall']:.2f} s; {w['burst_median']:.2f} / {w['burst_max']:.2f} s",
                         target="50/50", met=w["burst_ok"] == 50))
        rows.append(dict(what=f"{small} on-demand: RSS with {w['running_after_burst']} awake / asleep again",
                         value=f"{w['rss_awake_mb']:.0f} MB / {w['rss_asleep_mb']:.0f} MB"))
        rows.append(dict(what=f"{small} on-demand: every woken vassal gone after idle ({IDLE} s), and wakes again",
                         value=f"after {w['asleep_after']:.1f} s; wakes again: {'yes' if w['woke_again'] else 'NO'}",
                         target="all gone", met=w["woke_again"]))
    finally:
        inv.cleanup()
    inv = Inventory(big, port=free_port(), app={"processes": 1, "on_demand": True, "idle": IDLE}, shared_nginx_logs=big > 5000)
    try:
        inv.hostctl("apply")
        rows += idle_rows(inv, big, None)
    finally:
        inv.cleanup()
    save("density", rows)
    return rows


if __name__ == "__main__":
    print(table(main()))
