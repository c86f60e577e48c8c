"""How long one ACME issuance takes against Pebble on loopback (HTTP-01 answered by the rendered nginx).

Starts Pebble + challtestsrv and `hostctl serve` for N acme customers, applies,
then orders their certificates one at a time (one order per run) and then all
at once as a forced renewal batch, and reports the median seconds per order.
Each order includes hostctl's local challenge-path probe. Run from the repo
root: .venv/bin/python bench/acme_issue.py [N]
"""

from __future__ import annotations

import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hostctl.acme import issuance
from hostctl.inventory import loader as inventory  # noqa: E402
from tests.harness import Sandbox, Server, free_port  # noqa: E402
from tests.pebble import Pebble  # noqa: E402


def main(n: int) -> None:
    box = Sandbox()
    pebble = Pebble(Path(tempfile.mkdtemp(prefix="hostctl-pebble-")), http_port=box.port)
    server = None
    try:
        box.write_settings({
            "emperor_dir": "../vassals", "nginx_dir": "../nginx", "run_dir": "../run", "log_dir": "../log", "state_dir": "../state",
            "nginx": {"listen": f"127.0.0.1:{box.port}"}, "isolation": {"users": "invoker"}, "defaults": {"processes": 1},
            "tls": {"https_listen": f"127.0.0.1:{free_port()}", "webroot": "../acme", "cert_dir": "../certs",
                    "acme": {"directory": pebble.directory, "ca_bundle": str(pebble.ca_bundle), "interval": 0}},
        })
        for i in range(n):
            box.write_customer(f"c{i}", {"apps": {"web": box.echo_app([f"c{i}.test", f"www.c{i}.test"], tls={"acme": True})}})
        server = Server(box)
        box.hostctl("apply")
        inv = inventory.load(box.inventory)
        single = []
        for i in range(n):
            result = issuance.run(inv, frozenset({"issue"}), names=frozenset({f"c{i}_web"}))
            assert not result.failed, [o.message for o in result.failed]
            single.append(result.outcomes[0].seconds)
        start = time.perf_counter()
        batch = issuance.run(inv, frozenset({"renew"}), force=True)
        total = time.perf_counter() - start
        assert not batch.failed and len(batch.outcomes) == n
        report = {
            "orders": n, "domains_per_certificate": 2,
            "one_order_per_run_s": [round(s, 3) for s in single], "median_one_order_s": round(statistics.median(single), 3),
            "batch_renewal_total_s": round(total, 3),
            "median_batch_order_s": round(statistics.median(o.seconds for o in batch.outcomes), 3),
        }
        print(json.dumps(report, indent=1))
    finally:
        if server is not None:
            server.stop()
        pebble.stop()
        shutil.rmtree(pebble.workdir, ignore_errors=True)
        box.cleanup()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5)
