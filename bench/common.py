"""Shared helpers for the benchmarks: generated inventories, medians, result tables.

Benchmarks are scripts, not tests: they report medians of several runs and
ratios measured in the same run, because these machines are shared and noisy.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
HELLO = """def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"hello"]
"""


def scale() -> float:
    """HOSTCTL_BENCH_SCALE (default 1): multiply every size by this for a quick run (e.g. 0.1)."""
    return float(os.environ.get("HOSTCTL_BENCH_SCALE", "1"))


def scaled(n: int, minimum: int = 1) -> int:
    return max(minimum, int(round(n * scale())))


def median(values: list[float]) -> float:
    return statistics.median(values)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


class Inventory:
    """A generated inventory under /tmp (0755, so nginx's workers can reach it): N customers x 1 app x 2 domains."""

    def __init__(self, customers: int, *, port: int = 8080, settings: dict[str, Any] | None = None,
                 app: dict[str, Any] | None = None, prefix: str = "hostctl-bench-", shared_nginx_logs: bool = False):
        self.root = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
        os.chmod(self.root, 0o755)
        self.inventory = self.root / "inventory"
        (self.inventory / "customers").mkdir(parents=True)
        (self.root / "app.py").write_text(HELLO)
        self.port = port
        self.app = {"processes": 1, **(app or {})}
        base = {
            "emperor_dir": "../vassals", "nginx_dir": "../nginx", "run_dir": "../run", "log_dir": "../log",
            "state_dir": "../state", "nginx": {"listen": f"127.0.0.1:{port}"}, "isolation": {"users": "invoker"},
        }
        base.update(settings or {})
        (self.inventory / "hostctl.yaml").write_text(json.dumps(base))  # JSON is YAML
        if shared_nginx_logs:
            self.share_nginx_logs()
        for i in range(customers):
            self.write_customer(self.name(i))

    def share_nginx_logs(self) -> None:
        """Override server.conf.j2 so that every server block logs to one shared pair of files.

        nginx keeps every log file open in the master and in each worker: two per app. At
        10,000 apps that exceeds this machine's hard RLIMIT_NOFILE (20,000, and no
        CAP_SYS_RESOURCE to raise it), so `nginx -t` fails. The override differs from the
        packaged template in the two log paths only.
        """
        packaged = (REPO / "templates" / "server.conf.j2").read_text()
        shared = (packaged.replace("{{ paths.access_log | ngx }}", str(self.root / "log" / "access.log"))
                  .replace("{{ paths.error_log | ngx }}", str(self.root / "log" / "error.log")))
        assert shared != packaged, "server.conf.j2 no longer names paths.access_log/paths.error_log"
        (self.inventory / "templates").mkdir(exist_ok=True)
        (self.inventory / "templates" / "server.conf.j2").write_text(shared)

    @staticmethod
    def name(i: int) -> str:
        return f"c{i:05d}"

    def path(self, name: str) -> Path:
        """A path under the root (what tests.harness.Server expects of a sandbox)."""
        return self.root / name

    def customer_yaml(self, name: str, extra_env: str | None = None, app: dict[str, Any] | None = None) -> str:
        lines = ["apps:", "  web:", f"    domains: [{name}.example, www.{name}.example]",
                 f"    wsgi: {self.root / 'app.py'}"]
        for key, value in (self.app if app is None else app).items():
            lines.append(f"    {key}: {json.dumps(value)}")
        lines.append("    env:")
        lines.append(f"      CUSTOMER: {name}")
        if extra_env:
            lines.append(f"      EXTRA: {extra_env}")
        return "\n".join(lines) + "\n"

    def write_customer(self, name: str, extra_env: str | None = None, app: dict[str, Any] | None = None) -> Path:
        path = self.inventory / "customers" / f"{name}.yaml"
        path.write_text(self.customer_yaml(name, extra_env, app))
        return path

    def hostctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        proc = subprocess.run([sys.executable, "-m", "hostctl", "-i", str(self.inventory), *args],
                              capture_output=True, text=True, env=env)
        if check and proc.returncode != 0:
            raise RuntimeError(f"hostctl {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        return proc

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def save(name: str, rows: list[dict[str, Any]]) -> Path:
    """Write one benchmark's rows to bench/results/NAME.json (gitignored)."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"scale": scale(), "rows": rows}, indent=1) + "\n")
    return path


def table(rows: list[dict[str, Any]]) -> str:
    """Rows of {what, value, target, met} as a Markdown table."""
    out = ["| benchmark | measured | target | met |", "|---|---|---|---|"]
    for row in rows:
        met = {True: "yes", False: "**no**", None: ""}[row.get("met")]
        out.append(f"| {row['what']} | {row['value']} | {row.get('target', '')} | {met} |")
    return "\n".join(out)


def files_state(*directories: Path) -> dict[str, int]:
    """mtime_ns of every file under ``directories`` (to see exactly which ones a run wrote)."""
    out = {}
    for directory in directories:
        for dirpath, _dirs, names in os.walk(directory):
            for name in names:
                path = os.path.join(dirpath, name)
                out[path] = os.stat(path).st_mtime_ns
    return out


def request(port: int, host: str, timeout: float = 10.0) -> int:
    """One GET / through nginx with a Host header; the HTTP status (0 when the connection failed)."""
    from tests.harness import http_status

    return http_status(port, "/", host, timeout)


def until_ok(port: int, host: str, timeout: float = 30.0, interval: float = 0.002) -> float:
    """Poll until ``host`` answers 200; return the monotonic time it did."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if request(port, host) == 200:
            return time.monotonic()
        time.sleep(interval)
    raise RuntimeError(f"{host} did not answer 200 within {timeout} s")


def raise_fd_limit(wanted: int = 65536) -> None:
    """10,000 apps mean 20,000+ open log files in nginx (two per app): lift RLIMIT_NOFILE for
    this process and its children, as the Emperor's systemd unit does (LimitNOFILE=65536)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, max(hard, wanted)))
    except (ValueError, OSError):  # not root: as far as the hard limit allows
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
