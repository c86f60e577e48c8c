"""Multi-host commands without a reachable server, and per-host reads over real SSH (issue 12, item 3).

`plan --host NAME --offline` plans against what this machine recorded of the host at its last
deploy (``deploycache.remember_state``): proven here with the host's sshd stopped. `limits --host`
and `certs --host` read the server itself over the status path's SSH connection.
"""

from __future__ import annotations

import os
import secrets
import subprocess

import pytest

from tests.harness import V1_CGROUP as V1, remove_cgroups, require_cgroup_v1
from tests.integration.test_multihost import Fleet, fleet  # noqa: F401 - the fixture
from tests.pki import CA

pytestmark = pytest.mark.integration


def offline(fleet: Fleet, host: str):  # type: ignore[no-untyped-def]
    return fleet.box.hostctl("plan", "--host", host, "--offline", "--exit-code", check=False)


def test_plan_offline_uses_the_last_deploys_record_with_the_server_down(fleet: Fleet) -> None:  # noqa: F811
    fleet.add_host("web1")
    fleet.add_host("web2")
    fleet.customer("acme", "web1")
    fleet.customer("globex", "web2")
    web1, web2 = fleet.root("web1"), fleet.root("web2")

    never = offline(fleet, "web1")  # no deploy yet: planned against an empty host, and it says so
    assert never.returncode == 2, never.stdout + never.stderr
    assert "Offline: nothing is recorded on this machine for host 'web1'" in never.stdout
    assert f"+ {web1}/emperor/acme_web.ini" in never.stdout and "Plan: 2 to add, 0 to change, 0 to remove." in never.stdout

    fleet.deploy()
    fleet.ssh.stop_one("web1")  # from here on web1 cannot be reached
    online = fleet.box.hostctl("plan", "--host", "web1", check=False)
    assert online.returncode == 1 and "cannot connect to root@127.0.0.1:" in online.stderr

    same = offline(fleet, "web1")
    assert same.returncode == 0, same.stdout + same.stderr
    assert "Offline: the state recorded at the last deploy to 'web1' from this machine (" in same.stdout
    assert "the server was not read" in same.stdout and "No changes." in same.stdout

    fleet.customer("acme", "web1", greeting="v2")  # a change, and a customer moving onto web1
    fleet.customer("globex", "web1")
    changed = offline(fleet, "web1")
    assert changed.returncode == 2, changed.stdout + changed.stderr
    assert f"~ {web1}/emperor/acme_web.ini" in changed.stdout
    assert f"+ {web1}/emperor/globex_web.ini" in changed.stdout
    moved = offline(fleet, "web2")  # web2 is still up, but nothing is read there either
    assert moved.returncode == 2 and f"- {web2}/emperor/globex_web.ini" in moved.stdout
    assert "move: 'globex' now lives on 'web1'; a deploy removes it here only once 'web1' serves it" in moved.stdout

    # A deploy that cannot reach web1 changes nothing there: its record stands
    failed = fleet.deploy(check=False)
    assert failed.returncode == 1 and "web1: FAILED" in failed.stdout
    still = offline(fleet, "web1")
    assert "the state recorded at the last deploy to 'web1'" in still.stdout and f"~ {web1}/emperor/acme_web.ini" in still.stdout

    # A deploy that ran on a host but did not go as planned (its nginx -t refuses everything): what
    # the host holds is not known here any more, so the record says so instead of keeping the old state
    fleet.settings["hosts"]["web2"]["nginx"]["test_command"] = "false"
    fleet.box.write_settings(fleet.settings)
    fleet.customer("initech", "web2")
    refused = fleet.deploy("--host", "web2", check=False)
    assert refused.returncode == 1 and "web2: FAILED: `false` failed on host 'web2'" in refused.stdout
    unknown = offline(fleet, "web2")
    assert unknown.returncode == 2
    assert "did not finish as planned (`false` failed on host 'web2'" in unknown.stdout
    assert "so its state is not known here: planned against an empty host" in unknown.stdout


def test_limits_and_certs_host_read_that_server_over_ssh(fleet: Fleet) -> None:  # noqa: F811
    """After a deploy as root (its own user, a v1 cgroup with the inventory's limits, its certificate shipped),
    `limits --host` shows that server's cgroup and `certs --host` the certificate deploy shipped there, both read
    there over SSH; a FIFO in place of the key there is refused without blocking; a server that cannot be reached
    is named (exit 1). (The test's server is this machine through its own sshd.)"""
    require_cgroup_v1()
    tag = secrets.token_hex(3)
    parent, user = f"hostctl-ol-{tag}", f"hco-{tag}"
    fleet.settings.update({"isolation": {"users": "per-customer"}, "cgroup": {"mode": "v1", "parent": parent}})
    fleet.add_host("web")
    fleet.add_host("gone")
    fleet.ssh.stop_one("gone")
    box = fleet.box
    cert, key = CA.create("hostctl offline CA").write(box.root / "tls", "acme", ["acme.example"])  # on this machine
    shipped = fleet.root("web") / "state" / "certs" / "acme_web"  # where deploy puts its copy on 'web'
    app = box.echo_app(["acme.example"], tls={"certificate": str(cert), "key": str(key)})
    box.write_customer("acme", {"host": "web", "user": user, "limits": {"memory": "64M", "pids": 64}, "apps": {"web": app}})
    box.write_customer("initech", {"host": "gone", "apps": {"web": box.echo_app(["initech.example"])}})
    try:
        fleet.deploy("--create-users", "--host", "web")
        assert os.path.isfile(f"{V1}/memory/{parent}/acme/memory.limit_in_bytes")
        assert (shipped / "fullchain.pem").read_bytes() == cert.read_bytes()

        limits = box.hostctl("limits", "--host", "web")
        lines = limits.stdout.splitlines()
        assert lines[0].startswith(f"host 'web': cgroup v1 ({V1}/memory, {V1}/cpu, {V1}/pids): one cgroup per customer "
                                   f"under '{parent}/'"), limits.stdout
        assert lines[1].split()[:3] == ["CUSTOMER", "MEMORY", "LIMIT"]
        row = lines[2].split()
        assert (row[0], row[2], row[5]) == ("acme", "64.0M", "0/64"), limits.stdout  # no process in it yet
        assert len(lines) == 3  # initech lives on 'gone'

        listed = box.hostctl("certs", "--host", "web")
        head, line = listed.stdout.splitlines()[:2]
        assert head.split()[:3] == ["CERTIFICATE", "CUSTOMER", "SOURCE"]
        assert line.split()[:3] == ["acme_web", "acme", "provided"] and "hostctl offline CA" in line and line.endswith("ok"), listed.stdout

        (shipped / "privkey.pem").unlink()
        os.mkfifo(shipped / "privkey.pem")  # a FIFO where the key is read there: refused, never opened for a blocking read
        fifo = box.hostctl("certs", "--host", "web", timeout=120)
        assert "the key" in fifo.stdout and "is not a regular file on host 'web'" in fifo.stdout, fifo.stdout

        down = box.hostctl("limits", "--host", "gone", check=False)
        assert down.returncode == 1 and "Error: host 'gone': cannot connect to root@127.0.0.1:" in down.stderr, down.stderr
        fleet.ssh.stop_one("web")  # the same commands once 'web' cannot be reached: they read nothing here instead
        for command in (("limits", "--host", "web"), ("certs", "--host", "web")):
            down = box.hostctl(*command, check=False)
            assert down.returncode == 1 and "Error: host 'web': cannot connect to root@127.0.0.1:" in down.stderr, down.stderr
        unknown = box.hostctl("limits", "--host", "nope", check=False)
        assert unknown.returncode == 1 and "unknown host 'nope'; hosts in hostctl.yaml: gone, web." in unknown.stderr
    finally:
        remove_cgroups(f"{V1}/{c}/{parent}{leaf}" for c in ("memory", "cpu", "pids") for leaf in ("/acme", ""))
        subprocess.run(["userdel", user], capture_output=True)
