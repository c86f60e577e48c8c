"""Drift and other people's files, with the real `nginx -t`: hand edits are shown, foreign files never touched."""

from __future__ import annotations

import os

import pytest

from tests.harness import Sandbox

pytestmark = pytest.mark.integration


def _customer(box: Sandbox, name: str, *domains: str) -> None:
    box.write_customer(name, {"apps": {"web": box.echo_app(list(domains) or [f"{name}.example"], env={"CUSTOMER": name})}})


def _state(paths: list) -> dict:
    return {str(p): (p.read_bytes(), os.stat(p).st_mtime_ns) for p in paths}


def test_drift_is_shown_and_foreign_files_are_never_touched(sandbox: Sandbox) -> None:
    _customer(sandbox, "acme")
    _customer(sandbox, "globex")
    sandbox.hostctl("apply")
    vassals, nginx = sandbox.path("vassals"), sandbox.path("nginx")
    foreign = [vassals / "other.ini", vassals / "README.txt", nginx / "zz_foreign.conf", nginx / "notes.txt"]
    (vassals / "other.ini").write_text("[uwsgi]\n; someone else's vassal\n")
    (vassals / "README.txt").write_text("not hostctl's\n")
    (nginx / "zz_foreign.conf").write_text(f"server {{ listen 127.0.0.1:{sandbox.port}; server_name other.example; return 204; }}\n")
    (nginx / "notes.txt").write_text("not hostctl's either\n")
    untouched = _state(foreign)

    # A hand edit to hostctl's own file is drift: plan says so, apply overwrites it (and says what it did).
    acme_vassal = vassals / "acme_web.ini"
    original = acme_vassal.read_text()
    acme_vassal.write_text(original + "processes = 64\n")
    plan = sandbox.hostctl("plan", "--exit-code", check=False)
    assert plan.returncode == 2
    assert f"~ {acme_vassal}  (drift: edited outside hostctl; apply overwrites it)" in plan.stdout
    assert "+processes = 64" not in plan.stdout and "-processes = 64" in plan.stdout
    sandbox.hostctl("apply")
    assert acme_vassal.read_text() == original
    assert sandbox.hostctl("plan", "--exit-code").returncode == 0

    # A customer leaves: its files go, nobody else's.
    (sandbox.inventory / "customers" / "globex.yaml").unlink()
    sandbox.hostctl("apply")
    assert not (vassals / "globex_web.ini").exists() and not (nginx / "globex_web.conf").exists()
    assert _state(foreign) == untouched

    # A file hostctl did not write where it wants to write: refused, nothing written.
    (vassals / "newco_web.ini").write_text("[uwsgi]\n; placed by hand\n")
    foreign.append(vassals / "newco_web.ini")
    untouched = _state(foreign)
    _customer(sandbox, "newco")
    before = sandbox.snapshot()
    result = sandbox.hostctl("apply", check=False)
    assert result.returncode == 1
    assert "Error: files hostctl did not create are in the way; nothing was written:" in result.stderr
    assert f"{vassals / 'newco_web.ini'}: the file exists but hostctl did not create it; move it away or delete it" in result.stderr
    assert sandbox.snapshot() == before and _state(foreign) == untouched
    (sandbox.inventory / "customers" / "newco.yaml").unlink()

    # A broken foreign server block makes even the last-known-good set fail nginx -t: nothing is written.
    (nginx / "zz_foreign.conf").write_text("server { bogus_directive; }\n")
    untouched = _state(foreign)
    _customer(sandbox, "acme", "acme.example", "www.acme.example")
    before = sandbox.snapshot()
    result = sandbox.hostctl("apply", check=False)
    assert result.returncode == 1
    assert "nginx -t fails even with every customer's last-known-good server blocks" in result.stderr
    assert 'unknown directive "bogus_directive" in zz_foreign.conf:1' in result.stderr
    assert sandbox.snapshot() == before and _state(foreign) == untouched


def test_rollback_works_while_a_customer_file_is_broken(sandbox: Sandbox) -> None:
    _customer(sandbox, "acme")
    sandbox.hostctl("apply")
    first = (sandbox.path("vassals") / "acme_web.ini").read_text()
    _customer(sandbox, "acme", "acme.example", "www.acme.example")
    sandbox.hostctl("apply")
    (sandbox.inventory / "customers" / "acme.yaml").write_text("apps: [\n")
    assert sandbox.hostctl("apply", check=False).returncode == 1
    result = sandbox.hostctl("rollback")
    assert "note: rolling back customers whose inventory file is broken too: acme" in result.stderr
    assert "Rollback to generation 1 complete: 0 added, 1 changed, 0 removed." in result.stdout
    assert (sandbox.path("vassals") / "acme_web.ini").read_text() == first
    assert "www.acme.example" not in (sandbox.path("nginx") / "acme_web.conf").read_text()
    listing = sandbox.hostctl("rollback", "--list").stdout.splitlines()
    assert [line.split()[2] for line in listing] == ["apply", "apply", "rollback"]
    assert listing[-1].endswith("rollback to generation 1  changed: acme  <- live"), listing  # the one now live
