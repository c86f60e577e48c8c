"""`hostctl status` of a multi-host inventory over real SSH (sshd on loopback) against a real Emperor + nginx."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.harness import Sandbox, free_port, run_cli
from tests.sshd import SshHosts, ours

pytestmark = pytest.mark.integration


def test_status_reads_each_host_over_ssh_and_names_the_unreachable_one(sandbox: Sandbox, make_server) -> None:
    web = sandbox  # host 'web': its directories, served by a real Emperor and nginx
    server = make_server(web)
    box = Sandbox()  # the operator's multi-host inventory
    ssh = SshHosts(box.root)
    try:
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
        box.hostctl("deploy", "--host", "web")
        server.wait_json("acme.example")

        both = run_cli(box.inventory, "status", "--json", "--cpu-interval", "0.2")
        assert both.returncode == 1, both.stderr
        doc = json.loads(both.stdout)
        rows = {row["customer"]: row for row in doc["apps"]}
        assert (rows["acme"]["host"], rows["acme"]["state"]) == ("web", "running")
        assert rows["acme"]["requests"] >= 1 and rows["acme"]["rss_bytes"] > 1 << 20 and rows["acme"]["cpu_percent"] is not None
        assert (rows["initech"]["host"], rows["initech"]["state"]) == ("gone", "down")
        assert "host 'gone': cannot connect to root@127.0.0.1:" in doc["emperor_error"]

        one = run_cli(box.inventory, "status", "--host", "web", "--cpu-interval", "0")
        assert one.returncode == 0, one.stdout  # everything on 'web' is up
        header, line = one.stdout.splitlines()[:2]
        assert header.split()[:4] == ["HOST", "CUSTOMER", "APP", "STATE"]
        assert line.split()[:4] == ["web", "acme", "web", "running"]
        unknown = run_cli(box.inventory, "status", "--host", "nope")
        assert unknown.returncode == 1 and "unknown host 'nope'; hosts in hostctl.yaml: gone, web." in unknown.stderr
    finally:
        try:
            ssh.stop()
        finally:
            assert not ours(ssh.keys), "sshd processes were left running"
            box.cleanup()
