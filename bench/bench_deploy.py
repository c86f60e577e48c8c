"""Multi-host deploy over real SSH: 4 hosts x 1,000 customers on loopback sshd servers.

Times `hostctl deploy` (the CLI, as an operator runs it: interpreter start,
loading 4,000 customer files, rendering 8,000 files, SSH to every host in
parallel) for a first deploy onto empty hosts, a no-op redeploy, and a
redeploy with one customer's env changed. Medians of several runs.
Targets (issue "Multi-host"): no-op under 3 s, one change under 3 s.

    python bench/bench_deploy.py            # HOSTCTL_BENCH_SCALE=0.1 for a quick run
    HOSTCTL_BENCH_TLS=1 python bench/bench_deploy.py   # every customer with its own certificate (shipped to its host)
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import Inventory, median, save, scaled, table, timed  # noqa: E402
from tests.sshd import SshHosts  # noqa: E402

HOSTS = 4
RUNS = {"first": 3, "noop": 5, "change": 5}
TARGET = 3.0
WITH_TLS = os.environ.get("HOSTCTL_BENCH_TLS") == "1"


def main() -> int:
    per_host = scaled(1000)
    inv = Inventory(0, prefix="hostctl-bench-deploy-")
    ssh = SshHosts(inv.root)
    try:
        names = [f"h{i}" for i in range(HOSTS)]
        hosts = {name: ssh.start(name) for name in names}
        settings = {
            "nginx": {"listen": "127.0.0.1:8080"}, "isolation": {"users": "invoker"},
            # nginx is not running on these simulated hosts: its test and reload are no-ops here
            "hosts": {name: h.settings(nginx={"test_command": "true", "reload_command": "true"}) for name, h in hosts.items()},
        }
        if WITH_TLS:
            settings["tls"] = {"https_listen": "127.0.0.1:8443"}
        (inv.inventory / "hostctl.yaml").write_text(json.dumps(settings))
        apps = {}
        if WITH_TLS:
            from tests.pki import CA

            ca = CA.create()
            for i in range(per_host * HOSTS):
                name = inv.name(i)
                cert, key = ca.write(inv.root / "own-certs", name, [f"{name}.example", f"www.{name}.example"])
                apps[name] = {**inv.app, "tls": {"certificate": str(cert), "key": str(key)}}
        for i in range(per_host * HOSTS):
            path = inv.write_customer(inv.name(i), app=apps.get(inv.name(i)))
            path.write_text(path.read_text() + f"host: {names[i % HOSTS]}\n")
        total = per_host * HOSTS

        def wipe() -> None:
            for h in hosts.values():
                for child in h.root.iterdir():
                    shutil.rmtree(child) if child.is_dir() else child.unlink()

        cpu: dict[str, list[float]] = {"first": [], "noop": [], "change": []}

        def deploy(kind: str) -> str:
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            out = inv.hostctl("deploy").stdout
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu[kind].append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
            return out

        first = []
        for _ in range(RUNS["first"]):
            wipe()
            seconds, out = timed(lambda: deploy("first"))
            assert out.count(f"{2 * per_host} file(s) uploaded") == HOSTS, out
            first.append(seconds)
        noop = []
        for _ in range(RUNS["noop"]):
            seconds, out = timed(lambda: deploy("noop"))
            assert out.count(": no changes") == HOSTS, out
            noop.append(seconds)
        change = []
        for run in range(RUNS["change"]):
            inv.write_customer(inv.name(7)).write_text(inv.customer_yaml(inv.name(7), f"run{run}", apps.get(inv.name(7)))
                                                       + f"host: {names[7 % HOSTS]}\n")
            seconds, out = timed(lambda: deploy("change"))
            assert "1 file(s) uploaded" in out and out.count(": no changes") == HOSTS - 1, out
            change.append(seconds)
    finally:
        ssh.stop()
        inv.cleanup()

    def fmt(xs: list[float], kind: str) -> str:
        return (f"{median(xs):.2f} s wall (runs: {', '.join(f'{x:.2f}' for x in xs)}); "
                f"hostctl's own CPU {median(cpu[kind]):.2f} s")

    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    tag = ", TLS" if WITH_TLS else ""
    rows = [
        {"what": f"deploy{tag}, first, {HOSTS} hosts x {per_host} customers ({2 * total} files)", "value": fmt(first, "first")},
        {"what": f"deploy{tag}, no-op, {HOSTS} x {per_host}", "value": fmt(noop, "noop"), "target": f"< {TARGET:.0f} s",
         "met": median(noop) < TARGET},
        {"what": f"deploy{tag}, one customer changed, {HOSTS} x {per_host}", "value": fmt(change, "change"),
         "target": f"< {TARGET:.0f} s", "met": median(change) < TARGET},
    ]
    print(f"load average at the end: {load} (2 cores; the hosts' sshd and scripts run on this machine too)")
    print(table(rows))
    save("deploy-tls" if WITH_TLS else "deploy", rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
