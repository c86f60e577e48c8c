"""The core contract against a real uWSGI Emperor and a real nginx over HTTP."""

from __future__ import annotations

import os

import pytest

from tests.harness import Sandbox, wait_for

pytestmark = pytest.mark.integration


def _add(box: Sandbox, name: str, domain: str, *extra: str) -> None:
    box.hostctl("add-customer", name, "--domain", domain, "--wsgi", str(box.apps / "echo.py"),
                "--env", f"CUSTOMER={name}", *extra)


def test_three_customers_served_then_one_reloaded_then_one_removed(sandbox: Sandbox, make_server) -> None:
    for name in ("acme", "globex", "initech"):
        _add(sandbox, name, f"{name}.example", "--env", "GREETING=v1")
    server = make_server(sandbox)
    applied = sandbox.hostctl("apply")
    assert "Apply complete: 6 added" in applied.stdout

    first = {name: server.wait_json(f"{name}.example") for name in ("acme", "globex", "initech")}
    for name, data in first.items():
        assert data["customer"] == name and data["greeting"] == "v1"

    # Change one customer's env by hand: only that vassal reloads.
    path = sandbox.inventory / "customers" / "globex.yaml"
    path.write_text(path.read_text().replace("GREETING: v1", "GREETING: v2"))
    plan = sandbox.hostctl("plan", "--exit-code", check=False)
    assert plan.returncode == 2, plan.stdout
    assert "globex_web.ini" in plan.stdout and "acme_web.ini" not in plan.stdout
    assert "(env values changed, not shown: GREETING)" in plan.stdout and "v2" not in plan.stdout  # redacted
    vassal_mtimes = {p: os.stat(p).st_mtime for p in (sandbox.path("vassals") / f"{n}_web.ini" for n in ("acme", "initech"))}
    nginx_workers = server.nginx_workers()
    applied = sandbox.hostctl("apply")
    assert "1 changed" in applied.stdout and "nginx reloaded" not in applied.stdout

    after = server.wait_json("globex.example", lambda d: d["greeting"] == "v2")
    assert after["pid"] != first["globex"]["pid"], "globex's workers should have been replaced"
    for name in ("acme", "initech"):
        again = server.get_json(f"{name}.example")
        assert again["pid"] == first[name]["pid"], f"{name} was reloaded although it did not change"
    assert {p: os.stat(p).st_mtime for p in vassal_mtimes} == vassal_mtimes
    assert server.nginx_workers() == nginx_workers, "nginx was reloaded although no server block changed"

    # Remove one customer: its vassal stops and its domain is no longer served.
    sandbox.hostctl("remove-customer", "initech")
    sandbox.hostctl("apply")
    initech_pid = first["initech"]["pid"]
    wait_for(lambda: not _alive(initech_pid), what="initech's worker to stop")
    server.wait_unserved("initech.example")  # the default server closes the connection for unknown hosts
    assert server.get_json("acme.example")["pid"] == first["acme"]["pid"]
    assert server.get_json("globex.example")["greeting"] == "v2"
    assert not (sandbox.path("vassals") / "initech_web.ini").exists()

    # A second apply has nothing to do and exits 0.
    again = sandbox.hostctl("apply")
    assert again.stdout.strip() == "No changes. The live files match the inventory."


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().split()[2] != "Z"


def test_invalid_inventory_changes_nothing(sandbox: Sandbox, make_server) -> None:
    _add(sandbox, "acme", "acme.example")
    server = make_server(sandbox)
    sandbox.hostctl("apply")
    server.wait_json("acme.example")
    before = sandbox.snapshot()

    sandbox.write_customer("broken", "apps:\n  web:\n    domains: ['exa mple.com', acme.example]\n    wsgi: x:y\n    procesess: 2\n")
    for command in ("apply", "plan", "validate"):
        result = sandbox.hostctl(command, check=False)
        assert result.returncode == 1, result
        assert "customers/broken.yaml:3: apps.web.domains[0]: 'exa mple.com' is not a valid domain name" in result.stderr
        assert "customers/broken.yaml:3: apps.web.domains[1]: 'acme.example' is already used by customer 'acme' (customers/acme.yaml:" in result.stderr
        assert "customers/broken.yaml:5: apps.web.procesess: unknown key 'procesess' (did you mean 'processes'?)" in result.stderr
    after = sandbox.snapshot()
    broken = str(sandbox.inventory / "customers" / "broken.yaml")
    assert {k: v for k, v in after.items() if k != broken} == before
    assert server.get_json("acme.example")["customer"] == "acme"


def test_server_block_rejected_by_nginx_writes_nothing(sandbox: Sandbox) -> None:
    _add(sandbox, "acme", "acme.example")
    sandbox.hostctl("apply")
    before = sandbox.snapshot()
    # An inventory-level template override that nginx rejects.
    templates = sandbox.inventory / "templates"
    templates.mkdir()
    (templates / "server.conf.j2").write_text(
        "server { listen {{ settings.nginx.listen }};\nserver_name {{ cfg.domains | join(' ') }};\nbogus_directive on; }\n")
    result = sandbox.hostctl("apply", check=False)
    assert result.returncode == 1
    assert "1 customer(s) quarantined; their last-known-good files stay live:" in result.stderr  # see issue 4
    assert 'acme_web.conf: nginx -t: unknown directive "bogus_directive" in acme_web.conf:3' in result.stderr
    override = str(templates / "server.conf.j2")
    record = str(sandbox.path("state") / "quarantine.json")  # who is held back, for plan and status
    assert {k: v for k, v in sandbox.snapshot().items() if k not in (override, record)} == before


def test_same_second_rewrite_still_reloads(sandbox: Sandbox, make_server) -> None:
    """Two applies within one second: the Emperor must still see the second change (mtime strictly later)."""
    _add(sandbox, "acme", "acme.example", "--env", "GREETING=a")
    server = make_server(sandbox)
    sandbox.hostctl("apply")
    server.wait_json("acme.example", lambda d: d["greeting"] == "a")
    path = sandbox.inventory / "customers" / "acme.yaml"
    vassal = sandbox.path("vassals") / "acme_web.ini"
    mtimes = [os.stat(vassal).st_mtime]
    for value in ("b", "c"):
        path.write_text(path.read_text().replace(f"GREETING: {chr(ord(value) - 1)}", f"GREETING: {value}"))
        sandbox.hostctl("apply")
        mtimes.append(os.stat(vassal).st_mtime)
    assert int(mtimes[0]) < int(mtimes[1]) < int(mtimes[2])
    server.wait_json("acme.example", lambda d: d["greeting"] == "c")
