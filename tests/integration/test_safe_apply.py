"""Safe apply against a real Emperor and nginx: quarantine, probes with rollback, hostctl rollback."""

from __future__ import annotations

import pytest

from hostctl.engine import history
from hostctl.inventory import loader as inventory
from tests.harness import Sandbox

pytestmark = pytest.mark.integration

# 190 characters: a valid domain name, but nginx -t fails on it ("could not build
# server_names_hash, you should increase server_names_hash_bucket_size: 128").
LONG = ".".join(["a" * 60] * 3) + ".example"


def _app(box: Sandbox, domains: list[str], greeting: str, **extra) -> dict:
    return {"apps": {"web": box.echo_app(domains, env={"GREETING": greeting}, **extra)}}


def test_quarantine_probe_rollback(sandbox: Sandbox, make_server) -> None:
    probe = {"path": "/", "status": 200, "timeout": 20}  # generous: a loaded machine may take seconds to reload
    sandbox.write_customer("acme", _app(sandbox, ["acme.example"], "a1", probe=probe))
    sandbox.write_customer("globex", _app(sandbox, ["globex.example"], "g1"))
    server = make_server(sandbox)
    sandbox.hostctl("apply")
    assert server.wait_json("acme.example")["greeting"] == "a1"
    globex_pid = server.wait_json("globex.example")["pid"]
    globex_conf = (sandbox.path("nginx") / "globex_web.conf").read_text()

    # One customer's bad change and one bad newcomer: both held back, acme's change goes live.
    sandbox.write_customer("acme", _app(sandbox, ["acme.example"], "a2", probe=probe))
    sandbox.write_customer("globex", _app(sandbox, ["globex.example", LONG], "g1"))
    sandbox.write_customer("hooli", _app(sandbox, ["hooli.example", "x" + LONG[1:]], "h1"))
    result = sandbox.hostctl("apply", check=False)
    assert result.returncode == 1, result
    assert "Error: 2 customer(s) quarantined; their last-known-good files stay live:" in result.stderr
    for name in ("globex", "hooli"):
        assert (f"  {name}: {sandbox.path('nginx')}/{name}_web.conf: nginx -t: could not build server_names_hash, "
                "you should increase server_names_hash_bucket_size: 128") in result.stderr
    assert "Apply complete: 0 added, 1 changed, 0 removed." in result.stdout  # acme's vassal
    assert server.wait_json("acme.example", lambda d: d["greeting"] == "a2")["greeting"] == "a2"
    assert server.get_json("globex.example")["pid"] == globex_pid  # untouched
    assert (sandbox.path("nginx") / "globex_web.conf").read_text() == globex_conf  # last-known-good stays live
    assert not (sandbox.path("nginx") / "hooli_web.conf").exists() and not (sandbox.path("vassals") / "hooli_web.ini").exists()
    assert server.unserved("hooli.example")
    plan = sandbox.hostctl("plan", "--no-diff")
    assert "quarantined by the last apply (its last-known-good files stay live): globex: " in plan.stdout
    settings = inventory.load(sandbox.inventory).settings
    assert sorted(history.quarantined(settings)) == ["globex", "hooli"]

    # A change whose probe fails (the app cannot load: 502) is rolled back to the last-known-good vassal.
    good_vassal = (sandbox.path("vassals") / "acme_web.ini").read_text()
    (sandbox.apps / "broken.py").write_text("raise RuntimeError('broken on purpose')\n")
    broken = _app(sandbox, ["acme.example"], "a3", probe={**probe, "timeout": 2})  # it never answers 200
    broken["apps"]["web"]["wsgi"] = str(sandbox.apps / "broken.py")
    sandbox.write_customer("acme", broken)
    result = sandbox.hostctl("apply", check=False)
    assert result.returncode == 1, result
    assert "  acme: http://acme.example/: probe expected HTTP 200 within 2 s, got HTTP 502; rolled back" in result.stderr
    assert (sandbox.path("vassals") / "acme_web.ini").read_text() == good_vassal
    assert server.wait_json("acme.example", lambda d: d["greeting"] == "a2")["greeting"] == "a2"
    assert "acme" in history.quarantined(settings)

    # Fixed inventory: everything goes live and the quarantine is empty.
    sandbox.write_customer("acme", _app(sandbox, ["acme.example"], "a4", probe=probe))
    sandbox.write_customer("globex", _app(sandbox, ["globex.example"], "g2"))
    sandbox.write_customer("hooli", _app(sandbox, ["hooli.example"], "h1"))
    sandbox.hostctl("apply")
    assert history.quarantined(settings) == {}
    assert server.wait_json("hooli.example")["greeting"] == "h1"
    assert server.wait_json("globex.example", lambda d: d["greeting"] == "g2")["greeting"] == "g2"
    assert server.wait_json("acme.example", lambda d: d["greeting"] == "a4")["greeting"] == "a4"

    # rollback CUSTOMER: only acme goes back, to the newest older generation where its files differ
    # (generations: 1 first apply, 2 acme a2, 3 the fix; the failed probe changed nothing).
    assert [history.load(settings, n).source for n in history.numbers(settings)] == ["apply"] * 3
    globex_pid = server.get_json("globex.example")["pid"]
    result = sandbox.hostctl("rollback", "acme")
    assert "Rollback to generation 2 complete: 0 added, 1 changed, 0 removed." in result.stdout
    assert "The inventory was not changed; the next apply re-applies it." in result.stdout
    assert server.wait_json("acme.example", lambda d: d["greeting"] == "a2")["greeting"] == "a2"
    assert server.get_json("globex.example")["pid"] == globex_pid

    # rollback: every file back to the generation before the live one (hooli disappears again).
    result = sandbox.hostctl("rollback")
    assert "Rollback to generation 2 complete" in result.stdout
    server.wait_unserved("hooli.example")
    assert server.wait_json("globex.example", lambda d: d["greeting"] == "g1")["greeting"] == "g1"
    assert [line.split()[2] for line in sandbox.hostctl("rollback", "--list").stdout.splitlines()][-2:] == ["rollback", "rollback"]
    snapshot = history.load(settings, 2).inventory
    assert "customers/hooli.yaml" in snapshot and "GREETING: a2" in snapshot["customers/acme.yaml"]

    # The next apply re-applies the inventory.
    sandbox.hostctl("apply")
    assert server.wait_json("acme.example", lambda d: d["greeting"] == "a4")["greeting"] == "a4"
    assert server.wait_json("hooli.example")["greeting"] == "h1"
