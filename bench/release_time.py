"""Benchmark: how long `hostctl release` takes for a Flask app, and whether a request fails meanwhile.

A real Emperor and nginx serve one customer (its own user and cgroup v1 leaf, as in
tests/integration/test_releases.py). After a first release, runs alternate between
a release whose requirements.txt did not change (the virtualenv is reused: unpack,
load check, switch, chain reload of 2 workers, health check) and one that changed
one package (a new virtualenv: venv + pip install from the pip cache, the changed
package downloaded once). A request loop runs through nginx the whole time and
every failed request is counted. Medians of HOSTCTL_BENCH_RUNS (default 5) each.
Needs root (users, cgroups) and PyPI.
"""

from __future__ import annotations

import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import os  # noqa: E402

from bench.common import save, table  # noqa: E402
from tests.harness import Server  # noqa: E402
from tests.integration.test_releases import PIP_CACHE, Releases  # noqa: E402

SIX = [  # one changed package per run: a pin of a small package
    "1.17.0", "1.16.0", "1.15.0", "1.14.0", "1.13.0", "1.12.0", "1.11.0", "1.10.0",
]


def main() -> None:
    runs = int(os.environ.get("HOSTCTL_BENCH_RUNS", "5"))
    rel = Releases()
    try:
        rel.box.write_customer("rel", {"user": rel.user, "apps": {"flask": {
            "domains": ["flask.test"], "wsgi": "app:app", "root": str(rel.root("flask")), "env": {"PIP_CACHE_DIR": PIP_CACHE},
            "probe": {"path": "/health", "status": 200, "timeout": 10}, "release": {"keep": 3}}}})
        rel.box.hostctl("apply", "--create-users")
        rel.server = Server(rel.box)
        rel.release("--source", rel.flask_source("first", "v0", requirements=f"flask\nsix=={SIX[0]}\n"))
        statuses: list[int] = []
        failures: list[str] = []
        stop = threading.Event()

        def loop() -> None:
            while not stop.is_set():
                status, body = rel.text("flask.test")
                statuses.append(status)
                if status != 200:
                    failures.append(f"{time.strftime('%H:%M:%S')} HTTP {status}: {body[:200]!r}")

        thread = threading.Thread(target=loop)
        thread.start()
        same, changed = [], []
        try:
            for i in range(runs):
                start = time.perf_counter()
                rel.release("--source", rel.flask_source(f"same{i}", f"s{i}", requirements=f"flask\nsix=={SIX[0]}\n"))
                same.append(time.perf_counter() - start)
                start = time.perf_counter()
                rel.release("--source", rel.flask_source(f"changed{i}", f"c{i}", requirements=f"flask\nsix=={SIX[i + 1]}\n"))
                changed.append(time.perf_counter() - start)
                # back to the first requirements, so the next "same" run reuses a kept virtualenv
                rel.release("--source", rel.flask_source(f"back{i}", f"b{i}", requirements=f"flask\nsix=={SIX[0]}\n"))
        finally:
            stop.set()
            thread.join(timeout=60)
        failed = len([s for s in statuses if s != 200])
        rows = [
            {"what": "release, requirements unchanged (venv reused), median", "value": f"{statistics.median(same):.2f} s",
             "runs": [round(t, 2) for t in same]},
            {"what": "release, one package changed (new venv, pip cache), median", "value": f"{statistics.median(changed):.2f} s",
             "runs": [round(t, 2) for t in changed]},
            {"what": "requests through nginx during all releases (2 workers, chain reload)",
             "value": f"{len(statuses)} sent, {failed} failed", "target": "0 failed", "met": failed == 0},
        ]
        for row in rows[:2]:
            print(row["what"], row["runs"], flush=True)
        for line in failures:  # what failed, to find it in the app's and nginx's logs
            print("failed:", line)
        if failures:
            log = rel.box.path("log") / "rel"
            for name in ("flask.error.log", "uwsgi/flask.log"):
                text = (log / name).read_text(errors="replace") if (log / name).exists() else ""
                print(f"--- {name} (last 40 lines)\n" + "\n".join(text.splitlines()[-40:]))
        print(table(rows))
        save("release_time", rows)
    finally:
        rel.teardown()


if __name__ == "__main__":
    main()
