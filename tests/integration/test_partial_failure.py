"""Partial failure is per customer, against a real Emperor and nginx.

Customers whose own files break in each way an operator meets (YAML syntax, an
unknown key, a chdir or wsgi file that does not exist, a virtualenv of another
Python, a corrupt certificate and key) are held back on their last-known-good
state, while the others' changes go live and plan, status, logs and limits work.
"""

from __future__ import annotations

import json

import pytest

from hostctl.engine import history
from hostctl.inventory import loader as inventory
from tests.harness import Sandbox, free_port
from tests.pki import CA

pytestmark = pytest.mark.integration

BROKEN = ("yamlerr", "typo", "nodir", "nowsgi", "venv", "tls")


@pytest.fixture
def box():
    box = Sandbox({"tls": {"https_listen": f"127.0.0.1:{free_port()}", "webroot": "../acme", "cert_dir": "../certs"}})
    yield box
    box.cleanup()


def _customer(box: Sandbox, name: str, greeting: str, **extra) -> dict:
    return {"apps": {"web": box.echo_app([f"{name}.example"], env={"GREETING": greeting}, **extra)}}


def test_broken_customers_are_held_back_and_the_others_go_live(box: Sandbox, make_server) -> None:
    ca = CA.create()
    cert, key = ca.write(box.path("own"), "tls", ["tls.example"])
    for name in ("acme",) + BROKEN:
        extra = {"tls": {"certificate": str(cert), "key": str(key), "https_only": False}} if name == "tls" else {}
        extra |= {"chdir": str(box.apps)} if name == "nodir" else {}
        box.write_customer(name, _customer(box, name, "v1", **extra))
    server = make_server(box)
    box.hostctl("apply")
    pids = {name: server.wait_json(f"{name}.example")["pid"] for name in ("acme",) + BROKEN}
    live = {p.name: p.read_bytes() for d in ("vassals", "nginx") for p in box.path(d).iterdir()}

    # Break six customers, each in its own way; change acme and add a newcomer.
    box.write_customer("yamlerr", "apps:\n  web: {domains: [yamlerr.example], wsgi: x.py\n")
    typo = _customer(box, "typo", "v2")
    typo["apps"]["web"]["proceses"] = 2
    box.write_customer("typo", typo)
    box.write_customer("nodir", _customer(box, "nodir", "v2", chdir=str(box.path("no-such-dir"))))
    box.write_customer("nowsgi", {"apps": {"web": {"domains": ["nowsgi.example"], "wsgi": str(box.apps / "gone.py")}}})
    wrong = box.path("wrong-venv")
    wrong.mkdir()
    (wrong / "pyvenv.cfg").write_text("home = /opt/python3.12/bin\nexecutable = /opt/python3.12/bin/python3.12\n")
    box.write_customer("venv", _customer(box, "venv", "v2", virtualenv=str(wrong)))
    bad_cert, bad_key = box.path("own") / "renewed.pem", box.path("own") / "renewed.key"
    bad_cert.write_text("-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n")
    bad_key.write_text("not a key\n")
    box.write_customer("tls", _customer(box, "tls", "v2", tls={"certificate": str(bad_cert), "key": str(bad_key)}))
    box.write_customer("acme", _customer(box, "acme", "v2"))
    box.write_customer("newco", _customer(box, "newco", "n1"))

    plan = box.hostctl("plan", "--no-diff", check=False)
    assert plan.returncode == 1, plan
    assert "6 customer(s) held back by their own inventory file" in plan.stderr
    assert f"+ {box.path('vassals')}/newco_web.ini" in plan.stdout and f"~ {box.path('vassals')}/acme_web.ini" in plan.stdout
    assert not any(f"/{name}_web." in plan.stdout for name in BROKEN), plan.stdout

    result = box.hostctl("apply", check=False)
    assert result.returncode == 1, result
    err = result.stderr
    assert "Error: 6 customer(s) quarantined; their last-known-good files stay live:" in err
    assert "  yamlerr: customers/yamlerr.yaml:3: is not valid YAML: " in err
    assert "  typo: customers/typo.yaml:8: apps.web.proceses: unknown key 'proceses' (did you mean 'processes'?)" in err
    assert f"  nodir: customers/nodir.yaml:8: apps.web.chdir: '{box.path('no-such-dir')}' does not exist" in err
    assert f"  nowsgi: customers/nowsgi.yaml:5: apps.web.wsgi: '{box.apps}/gone.py' does not exist" in err
    assert f"  venv: customers/venv.yaml:8: apps.web.virtualenv: '{wrong}' was made with the Python in " in err
    assert f"  tls: customers/tls.yaml:9: apps.web.tls.certificate: customer 'tls': '{bad_cert}' cannot be used: " in err
    assert "Apply complete: 2 added, 1 changed, 0 removed." in result.stdout, result.stdout  # newco's two files, acme's vassal

    # The others' changes are live; every broken customer still serves its last-known-good state.
    assert server.wait_json("acme.example", lambda d: d["greeting"] == "v2")["greeting"] == "v2"
    assert server.wait_json("newco.example")["greeting"] == "n1"
    for name in BROKEN:
        assert (box.path("vassals") / f"{name}_web.ini").read_bytes() == live[f"{name}_web.ini"]
        assert (box.path("nginx") / f"{name}_web.conf").read_bytes() == live[f"{name}_web.conf"]
        answer = server.get_json(f"{name}.example")
        assert (answer["greeting"], answer["pid"]) == ("v1", pids[name]), name
    settings = inventory.load(box.inventory, partial=True).settings
    assert sorted(history.quarantined(settings)) == sorted(BROKEN)

    # status (table and JSON), logs and limits work and show everyone.
    status = box.hostctl("status", "--json", "--cpu-interval", "0", check=False)
    rows = {r["customer"]: r for r in json.loads(status.stdout)["apps"]}
    assert sorted(rows) == sorted(("acme", "newco") + BROKEN), status.stdout
    assert all(rows[n]["state"] == "quarantined" and "underneath: running" in rows[n]["detail"] for n in BROKEN), rows
    assert rows["yamlerr"]["domains"] == ["yamlerr.example"]
    assert rows["acme"]["healthy"] and rows["newco"]["healthy"] and rows["acme"]["pid"] and rows["newco"]["pid"], rows
    table = box.hostctl("status", "--cpu-interval", "0", check=False)
    assert "yamlerr" in table.stdout and "newco" in table.stdout, table
    logs = box.hostctl("logs", "yamlerr", "-n", "5")
    assert logs.returncode == 0
    limits = box.hostctl("limits")
    assert limits.returncode == 0

    # Fixed: the next apply takes everyone, and the quarantine record empties.
    for name in BROKEN:
        box.write_customer(name, _customer(box, name, "v3"))
    box.hostctl("apply")
    assert history.quarantined(settings) == {}
    for name in BROKEN:
        assert server.wait_json(f"{name}.example", lambda d: d["greeting"] == "v3")["greeting"] == "v3"
