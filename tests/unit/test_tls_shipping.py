"""TLS on hosts reached by deploy: what is shipped and rendered for a host (from data), and the engine's file step
(root-only certificate directory, never through a path someone else could swap)."""

from __future__ import annotations

import datetime as dt
import os
import stat
from pathlib import Path

import pytest
import yaml

from hostctl.engine.core import tlsfiles
from hostctl.engine.core.job import Job, Paths
from hostctl.engine.core.nginx import Nginx
from hostctl.engine.core.tlsfiles import ShippedCert
from hostctl.inventory import loader, placement
from hostctl.render import tls
from hostctl.targets import tlsship
from tests.pki import CA


def _multihost(tmp_path: Path, customers: dict[str, dict]) -> loader.Inventory:
    root = tmp_path / "inv"
    (root / "customers").mkdir(parents=True)
    host = {"address": "127.0.0.1", **{k: f"/srv/web/{k}" for k in ("emperor_dir", "nginx_dir", "run_dir", "log_dir", "state_dir")}}
    (root / "hostctl.yaml").write_text(yaml.safe_dump({"tls": {"https_listen": "127.0.0.1:8443", "cert_dir": "certs"},
                                                      "hosts": {"web": host}}))
    for name, tls_cfg in customers.items():
        app = {"domains": [f"{name}.example"], "wsgi": "a:b", **({"tls": tls_cfg} if tls_cfg else {})}
        (root / "customers" / f"{name}.yaml").write_text(yaml.safe_dump({"host": "web", "apps": {"web": app}}))
    return loader.load(root)


def test_a_hosts_certificates_live_in_its_own_cert_dir_and_an_unusable_operator_certificate_holds_its_customer(tmp_path: Path) -> None:
    ca = CA.create()
    good = ca.write(tmp_path / "own", "good", ["good.example"])
    wrong = ca.write(tmp_path / "own", "wrong", ["other.example"])  # covers another name
    inv = _multihost(tmp_path, {"good": {"certificate": str(good[0]), "key": str(good[1])},
                                "wrong": {"certificate": str(wrong[0]), "key": str(wrong[1])},
                                "fresh": {"acme": True}, "plain": None})
    view = placement.host_inventory(inv, "web")
    assert view.settings.tls.cert_dir == "/srv/web/state_dir/certs"
    assert view.settings.tls.webroot == "/var/lib/hostctl-acme"

    found = tlsship.for_host(inv, view, dt.datetime.now(dt.timezone.utc))
    assert list(found.ready) == ["/srv/web/state_dir/certs/good_web/fullchain.pem"]
    assert [(c.name, c.customer, c.key.encode("latin-1")) for c in found.certs] == [("good_web", "good", good[1].read_bytes())]
    assert [(r.customer, r.file) for r in found.held] == [("wrong", str(wrong[0]))]
    assert "does not cover wrong.example" in found.held[0].reason
    assert [(s.name, s.certificate) for s in found.acme] == [("fresh_web", f"{inv.root}/certs/fresh_web/fullchain.pem")]

    app = {a.customer: a for a in view.apps()}
    decided = tls.decide(app["good"], view.settings, found.ready, found.shipped)
    assert decided.state == "ready" and decided.certificate == "/srv/web/state_dir/certs/good_web/fullchain.pem"
    assert decided.stamp == found.shipped[decided.certificate] and len(decided.stamp) == 16
    assert tls.decide(app["fresh"], view.settings, found.ready, found.shipped).state == "pending"
    # locally (no shipping) the operator's file is used where it is, with no stamp
    local = tls.decide(app["good"], inv.settings, {str(good[0]): frozenset({"good.example"})})
    assert local.certificate == str(good[0]) and local.stamp is None


def test_a_new_certificate_changes_the_stamp_so_the_server_block_changes(tmp_path: Path) -> None:
    ca = CA.create()
    cert, key = ca.write(tmp_path / "own", "good", ["good.example"])
    inv = _multihost(tmp_path, {"good": {"certificate": str(cert), "key": str(key)}})
    view = placement.host_inventory(inv, "web")
    now = dt.datetime.now(dt.timezone.utc)
    before = tlsship.for_host(inv, view, now).shipped
    ca.write(tmp_path / "own", "good", ["good.example"])
    after = tlsship.for_host(inv, view, now).shipped
    assert before.keys() == after.keys() and before != after


def _cert(name: str = "alpha_web", customer: str = "alpha", key: str = "KEY\n") -> ShippedCert:
    return ShippedCert(name, customer, "CHAIN\n", key)


def test_install_writes_root_only_files_once_and_replaces_them_atomically(tmp_path: Path) -> None:
    cert_dir = tmp_path / "state" / "certs"
    written, failed = tlsfiles.install(str(cert_dir), [_cert()])
    assert (written, failed) == (["alpha_web"], {})
    assert stat.S_IMODE(cert_dir.stat().st_mode) == 0o700 and stat.S_IMODE((cert_dir / "alpha_web").stat().st_mode) == 0o700
    key = cert_dir / "alpha_web" / "privkey.pem"
    assert key.read_text() == "KEY\n" and stat.S_IMODE(key.stat().st_mode) == 0o600
    assert (cert_dir / "alpha_web" / "fullchain.pem").read_text() == "CHAIN\n"
    inode = key.stat().st_ino
    assert tlsfiles.install(str(cert_dir), [_cert()]) == ([], {})  # the same content: nothing written
    assert key.stat().st_ino == inode
    assert tlsfiles.install(str(cert_dir), [_cert(key="NEW\n")])[0] == ["alpha_web"]
    assert key.read_text() == "NEW\n" and key.stat().st_ino != inode  # a new file renamed over the old one
    assert sorted(os.listdir(cert_dir / "alpha_web")) == ["fullchain.pem", "privkey.pem"]


def test_install_never_writes_through_a_symlink_or_a_directory_someone_else_can_write(tmp_path: Path) -> None:
    cert_dir = tmp_path / "certs"
    cert_dir.mkdir(mode=0o700)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (cert_dir / "evil_web").symlink_to(elsewhere)
    written, failed = tlsfiles.install(str(cert_dir), [_cert("evil_web", "evil"), _cert()])
    assert written == ["alpha_web"] and list(failed) == ["evil"]  # the others go on
    assert list(elsewhere.iterdir()) == []

    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)  # writable by everyone, not sticky: anyone could swap what lies below
    written, failed = tlsfiles.install(str(shared / "certs"), [_cert()])
    assert written == [] and "writable by others" in failed["alpha"][1]
    assert not (shared / "certs").exists() or not list((shared / "certs").iterdir())


def test_challenge_tokens_are_put_and_removed_and_a_bad_token_is_refused(tmp_path: Path) -> None:
    webroot = tmp_path / "acme"
    tlsfiles.challenges(str(webroot), {"tok_en-1": "tok_en-1.thumb"}, [])
    token = webroot / ".well-known" / "acme-challenge" / "tok_en-1"
    assert token.read_text() == "tok_en-1.thumb" and stat.S_IMODE(token.stat().st_mode) == 0o644
    tlsfiles.challenges(str(webroot), {}, ["tok_en-1"])
    assert not token.exists()
    with pytest.raises(ValueError):
        tlsfiles.challenges(str(webroot), {"../../etc/passwd": "x"}, [])


def test_a_job_carries_its_certificates() -> None:
    job = Job(Paths("/e", "/n", "/r", "/l", "/s"), Nginx(), "127.0.0.1:80", cert_dir="/s/certs", certs=(_cert(),))
    again = Job.from_dict(job.to_dict())
    assert again.cert_dir == "/s/certs" and again.certs == (_cert(),)


def test_certs_issue_refuses_an_inventory_with_hosts_and_points_to_deploy(tmp_path: Path) -> None:
    from tests.harness import run_cli

    inv = _multihost(tmp_path, {"fresh": {"acme": True}})
    done = run_cli(inv.root, "certs", "issue")
    assert done.returncode == 1 and "`hostctl deploy` orders and renews their ACME certificates" in done.stderr


def test_prune_removes_only_certificate_directories_hostctl_wrote_and_no_longer_serves(tmp_path: Path) -> None:
    cert_dir = tmp_path / "certs"
    tlsfiles.install(str(cert_dir), [_cert("alpha_web", "alpha"), _cert("beta_web", "beta")])
    (cert_dir / "other").mkdir()
    (cert_dir / "other" / "someone-elses.pem").write_text("x")  # not what install writes: kept
    (cert_dir / "gone_web").symlink_to(tmp_path)  # a symlink is never followed nor removed through
    assert tlsfiles.prune(str(cert_dir), {"alpha_web"}) == ["beta_web"]
    assert sorted(os.listdir(cert_dir)) == ["alpha_web", "gone_web", "other"]
    assert tlsfiles.prune(str(tmp_path / "missing"), set()) == [] and not (tmp_path / "missing").exists()


def test_deploy_cache_sees_certificate_files_and_holds_a_hosts_record_only_until_its_first_certificate_is_due(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from hostctl.targets import deploycache

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    ca = CA.create()
    cert, key = ca.write(tmp_path / "own", "good", ["good.example"])
    inv = _multihost(tmp_path, {"good": {"certificate": str(cert), "key": str(key)}, "plain": None})
    root = str(inv.root)
    before = deploycache.inputs(root)
    ca.write(tmp_path / "own", "good", ["good.example"])  # the operator replaces the files; no inventory byte changes
    after = deploycache.inputs(root)
    assert before.customers["customers/good.yaml"] != after.customers["customers/good.yaml"]
    assert before.customers["customers/plain.yaml"] == after.customers["customers/plain.yaml"]
    (inv.root / "certs" / "fresh_web").mkdir(parents=True)
    (inv.root / "certs" / "fresh_web" / "fullchain.pem").write_text("x")  # an ACME certificate this machine got
    assert deploycache.inputs(root).customers["customers/good.yaml"] != after.customers["customers/good.yaml"]

    fp = "f" * 64
    deploycache.remember(root, fp, {"web": "a", "db": "b", "mail": "c"},
                         until={"web": time.time() + 3600, "db": time.time() - 1, "mail": None})
    assert sorted(deploycache.expected_digests(root, fp)) == ["mail", "web"]  # db's certificate came due
    deploycache.remember_hosts(root, {"web": ("h1", "d1"), "db": ("h2", "d2"), "mail": ("h3", "d3")},
                               {"web": time.time() + 3600, "db": 0.0, "mail": None})
    assert deploycache.host_digest(root, "web", "h1") == "d1" and deploycache.host_digest(root, "mail", "h3") == "d3"
    assert deploycache.host_digest(root, "db", "h2") is None  # a customer held for its certificate: render again
