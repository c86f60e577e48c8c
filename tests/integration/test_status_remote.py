"""`hostctl status` of a multi-host inventory over real SSH (sshd on loopback) against a real Emperor + nginx."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid

import psutil
import pytest
import yaml

from tests.harness import Sandbox, free_port, run_cli, wait_for
from tests.sshd import hosts_for

pytestmark = pytest.mark.integration


def test_status_reads_each_host_over_ssh_and_names_the_unreachable_one(sandbox: Sandbox, make_server) -> None:
    web = sandbox  # host 'web': its directories, served by a real Emperor and nginx
    server = make_server(web)
    box = Sandbox()  # the operator's multi-host inventory
    with hosts_for(box) as ssh:
        host = ssh.start("web")
        serve = web.root / "run" / "serve"
        paths = {key: str(web.root / d) for key, d in (("emperor_dir", "vassals"), ("nginx_dir", "nginx"),
                                                      ("run_dir", "run"), ("log_dir", "log"), ("state_dir", "state"))}
        settings = yaml.safe_load((box.inventory / "hostctl.yaml").read_text())
        settings["hosts"] = {
            "web": host.settings(**paths, nginx={"listen": f"127.0.0.1:{web.port}",
                                                 "test_command": f"nginx -t -q -p {serve} -c {serve}/nginx.conf -e stderr",
                                                 "reload_command": f"kill -HUP $(cat {serve}/nginx.pid)"}),
            "gone": {**host.settings(), "port": free_port()},  # nothing listens there
        }
        box.write_settings(settings)
        box.write_customer("acme", {"host": "web", "apps": {"web": box.echo_app(["acme.example"])}})
        box.write_customer("initech", {"host": "gone", "apps": {"web": box.echo_app(["initech.example"])}})
        box.write_customer("globex", {"host": "web", "apps": {"web": box.echo_app(["globex.example"])}})
        box.hostctl("deploy", "--host", "web")
        server.wait_json("acme.example")
        server.wait_json("globex.example")

        both = run_cli(box.inventory, "status", "--json", "--cpu-interval", "0.2")
        assert both.returncode == 1, both.stderr
        doc = json.loads(both.stdout)
        rows = {row["customer"]: row for row in doc["apps"]}
        assert (rows["acme"]["host"], rows["acme"]["state"]) == ("web", "running")
        assert rows["acme"]["requests"] >= 1 and rows["acme"]["rss_bytes"] > 1 << 20 and rows["acme"]["cpu_percent"] is not None
        assert (rows["initech"]["host"], rows["initech"]["state"]) == ("gone", "unknown")
        assert "host 'gone': cannot connect to root@127.0.0.1:" in doc["emperor_error"]

        one = run_cli(box.inventory, "status", "--host", "web", "--cpu-interval", "0")
        assert one.returncode == 0, one.stdout  # everything on 'web' is up
        header, line = one.stdout.splitlines()[:2]
        assert header.split()[:4] == ["HOST", "CUSTOMER", "APP", "STATE"]
        assert line.split()[:4] == ["web", "acme", "web", "running"]
        # globex's own file breaks: it is held back on its last-known-good files, and status and logs still list it
        # (its apps read from the host's manifest, its host unknown to the broken file), saying why
        (box.inventory / "customers" / "globex.yaml").write_text("host: web\napps: [\n")
        held = run_cli(box.inventory, "status", "--json", "--host", "web", "--cpu-interval", "0")
        held_rows = {row["customer"]: row for row in json.loads(held.stdout)["apps"]}
        assert held.returncode == 0 and sorted(held_rows) == ["acme", "globex"], held.stdout
        globex = held_rows["globex"]
        assert (globex["host"], globex["state"], globex["domains"]) == ("web", "quarantined", ["globex.example"]), globex
        assert "its inventory file is broken: customers/globex.yaml:3: is not valid YAML" in globex["detail"], globex
        assert "underneath: running" in globex["detail"] and globex["pid"], globex
        table = run_cli(box.inventory, "status", "globex", "--cpu-interval", "0")  # every host is asked
        assert "globex" in table.stdout and "quarantined" in table.stdout, table
        held_logs = run_cli(box.inventory, "logs", "globex", "-n", "5")
        assert held_logs.returncode == 0, held_logs
        assert "globex is held back by its own inventory file (customers/globex.yaml:3: " in held_logs.stderr, held_logs.stderr
        assert held_logs.stdout.strip(), held_logs  # its uWSGI log on host web, read there
        box.write_customer("globex", {"host": "web", "apps": {"web": box.echo_app(["globex.example"])}})
        unknown = run_cli(box.inventory, "status", "--host", "nope")
        assert unknown.returncode == 1 and "unknown host 'nope'; hosts in hostctl.yaml: gone, web." in unknown.stderr

        # logs: read on the customer's host; -f follows there, and stops there when hostctl goes
        marker = f"/remote/{uuid.uuid4().hex}"
        assert server.request("acme.example", marker)[0] == 200
        wait_for(lambda: f"echo: GET {marker}" in run_cli(box.inventory, "logs", "acme", "-n", "5").stdout, timeout=10,
                 what="the line the app printed for the request, in acme's uWSGI log on host web")
        nginx_logs = run_cli(box.inventory, "logs", "acme", "--nginx", "-n", "3")
        assert nginx_logs.returncode == 0 and f"GET {marker} " in nginx_logs.stdout and "web.error.log <==" in nginx_logs.stdout
        gone = run_cli(box.inventory, "logs", "initech")
        assert gone.returncode == 1 and "cannot connect to host 'gone'" in gone.stderr
        _follow_remote(box, server)


def _follow_remote(box: Sandbox, server, customer: str = "acme") -> None:
    out = open(box.root / "follow.out", "w+")
    proc = subprocess.Popen([sys.executable, "-m", "hostctl", "-i", str(box.inventory), "logs", customer, "-f", "-n", "0"],
                            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    probes: list[str] = []

    def following() -> bool:  # -n 0 shows only lines written after the remote tail started
        probes.append(f"/follow/{uuid.uuid4().hex}")
        assert server.request(f"{customer}.example", probes[-1])[0] == 200
        text = (box.root / "follow.out").read_text()
        return any(p in text for p in probes)

    try:
        wait_for(following, timeout=30, interval=0.3, what="logs -f over SSH to follow")
        assert proc.poll() is None
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        out.close()
    # the remote tail goes with it (else Server.stop would find it running in the host's log directory)
    wait_for(lambda: not [p for p in psutil.process_iter(["cmdline"]) if "tail" in (p.info["cmdline"] or [""])[0]
                          and str(server.sandbox.root) in " ".join(p.info["cmdline"] or [])],
             timeout=15, what="the remote tail to stop")
