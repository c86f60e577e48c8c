"""Multi-host commands without a reachable server, and per-host reads over real SSH (issue 12, item 3).

`plan --host NAME --offline` plans against what this machine recorded of the host at its last
deploy (``deploycache.remember_state``): proven here with the host's sshd stopped. `limits --host`
and `certs --host` read the server itself over the status path's SSH connection.
"""

from __future__ import annotations

import pytest

from tests.integration.test_multihost import Fleet, fleet  # noqa: F401 - the fixture

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
