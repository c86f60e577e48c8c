"""Benchmark 4: the request path. wrk against one hostctl-rendered site through nginx,
against nginx -> the same app under a minimal hand-written uWSGI + nginx config, in the same run.

Both sides get the same app, the same number of uWSGI processes and one nginx
worker each; the runs alternate (A B A B ...) and each side's median
requests/s is compared. The hand-written side is what a person would write
by hand: master, processes, a unix socket and the app; nginx with an access
log and a plain uwsgi_pass.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import HELLO, Inventory, median, save, scaled, table, until_ok  # noqa: E402
from tests.harness import Server, free_port  # noqa: E402

PROCESSES = 2
HAND_NGINX = """worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/tmp; proxy_temp_path {d}/tmp; fastcgi_temp_path {d}/tmp;
    uwsgi_temp_path {d}/tmp; scgi_temp_path {d}/tmp;
    server {{
        listen 127.0.0.1:{port};
        server_name hand.example;
        location / {{
            include /etc/nginx/uwsgi_params;
            uwsgi_pass unix:{d}/app.sock;
        }}
    }}
}}
"""


class CpuAccount:
    """A cgroup v1 cpuacct group: counts the CPU of every process in it, including ones that
    have exited (uWSGI recycles workers after max-requests), and inherited by their children."""

    BASE = "/sys/fs/cgroup/cpuacct"

    def __init__(self, name: str):
        self.path = os.path.join(self.BASE, f"hostctl-bench-{name}-{os.getpid()}")
        os.makedirs(self.path, exist_ok=True)

    def add_tree(self, pid: int) -> None:
        root = psutil.Process(pid)
        for proc in [root] + root.children(recursive=True):
            with open(os.path.join(self.path, "cgroup.procs"), "w") as fh:
                fh.write(str(proc.pid))

    def usage(self) -> float:
        with open(os.path.join(self.path, "cpuacct.usage")) as fh:
            return int(fh.read()) / 1e9

    def remove(self) -> None:
        with open(os.path.join(self.path, "cgroup.procs")) as fh:
            left = fh.read().split()
        for pid in left:  # anything still inside goes back to the root group
            try:
                with open(os.path.join(self.BASE, "cgroup.procs"), "w") as out:
                    out.write(pid)
            except OSError:
                pass
        os.rmdir(self.path)


def wrk(port: int, host: str, seconds: int, account: CpuAccount | None = None) -> tuple[float, float]:
    """(requests/s, server-side CPU microseconds per request) of one wrk run."""
    before = account.usage() if account else 0.0
    out = subprocess.run(["wrk", "-t2", "-c32", f"-d{seconds}s", "-H", f"Host: {host}", f"http://127.0.0.1:{port}/"],
                         capture_output=True, text=True, check=True).stdout
    used = account.usage() - before if account else 0.0
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk saw errors against {host}:\n{out}")
    requests = int(re.search(r"([0-9]+) requests in", out).group(1))
    return float(re.search(r"Requests/sec:\s+([0-9.]+)", out).group(1)), used / requests * 1e6


class HandWritten:
    """A minimal hand-written uWSGI instance and nginx for the same app."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="hostctl-bench-hand-", dir="/tmp")
        os.chmod(self.dir, 0o755)
        os.mkdir(os.path.join(self.dir, "tmp"))
        Path(self.dir, "app.py").write_text(HELLO)
        self.port = free_port()
        Path(self.dir, "nginx.conf").write_text(HAND_NGINX.format(d=self.dir, port=self.port))
        self.procs = [
            subprocess.Popen(["uwsgi", "--plugins", "python3", "--master", "--processes", str(PROCESSES),
                              "--socket", f"{self.dir}/app.sock", "--chmod-socket=666",
                              "--wsgi-file", f"{self.dir}/app.py"],
                             start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
            subprocess.Popen(["nginx", "-p", self.dir, "-c", f"{self.dir}/nginx.conf", "-e", f"{self.dir}/error.log"],
                             start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
        ]

    def stop(self) -> None:
        for proc, sig in zip(self.procs, (signal.SIGINT, signal.SIGQUIT)):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                pass
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def main() -> list[dict]:
    seconds, rounds = scaled(5, 2), scaled(3, 1)
    inv = Inventory(1, port=free_port(), app={"processes": PROCESSES})
    hand = None
    server = None
    accounts: list[CpuAccount] = []
    try:
        inv.hostctl("apply")
        server = Server(inv)
        hand = HandWritten()
        rendered_host = f"{inv.name(0)}.example"
        until_ok(inv.port, rendered_host)
        until_ok(hand.port, "hand.example")
        wrk(inv.port, rendered_host, 1)  # warm both up
        wrk(hand.port, "hand.example", 1)
        ours, theirs = [], []
        accounts = [CpuAccount("rendered"), CpuAccount("hand")]
        accounts[0].add_tree(server.proc.pid)
        for proc in hand.procs:
            accounts[1].add_tree(proc.pid)
        for _ in range(rounds):
            ours.append(wrk(inv.port, rendered_host, seconds, accounts[0]))
            theirs.append(wrk(hand.port, "hand.example", seconds, accounts[1]))
        ratio = median([r for r, _ in ours]) / median([r for r, _ in theirs])
        cpu_ratio = median([c for _, c in ours]) / median([c for _, c in theirs])
        print(f"  request_path: rendered {ours} hand-written {theirs}", file=sys.stderr)
    finally:
        if hand:
            hand.stop()
        if server:
            server.stop()
        inv.cleanup()
        for account in accounts:
            account.remove()
    rows = [
        dict(what=f"wrk through nginx, hostctl-rendered site (req/s, median of {rounds} x {seconds} s; server CPU per request)",
             value=f"{median([r for r, _ in ours]):.0f}; {median([c for _, c in ours]):.0f} µs"),
        dict(what="wrk through nginx, minimal hand-written nginx + uWSGI, same app (req/s; server CPU per request)",
             value=f"{median([r for r, _ in theirs]):.0f}; {median([c for _, c in theirs]):.0f} µs"),
        dict(what="rendered / hand-written throughput", value=f"{ratio:.2f}", target=">= 0.90", met=ratio >= 0.9),
        dict(what="rendered / hand-written server CPU per request (less noisy than req/s)", value=f"{cpu_ratio:.2f}",
             target="<= 1.11", met=cpu_ratio <= 1 / 0.9),
    ]
    save("request_path", rows)
    return rows


if __name__ == "__main__":
    print(table(main()))
