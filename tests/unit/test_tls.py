"""TLS decisions (pure) and certificate facts: which domains go HTTPS, and which certificates are refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from hostctl.engine import certs
from hostctl.engine.pipeline import load_checked
from hostctl.errors import InventoryError
from hostctl.inventory import loader as inventory
from hostctl.render import tls
from tests.pki import CA


@pytest.mark.parametrize("names, domain, expected", [
    ({"a.example"}, "a.example", True),
    ({"a.example"}, "b.example", False),
    ({"*.a.example"}, "www.a.example", True),
    ({"*.a.example"}, "a.example", False),  # a wildcard does not cover its parent
    ({"*.a.example"}, "x.www.a.example", False),  # nor two labels down
    ({"*.a.example"}, "*.a.example", True),
    ({"x.a.example"}, "*.a.example", False),
])
def test_covers(names: set[str], domain: str, expected: bool) -> None:
    assert tls.covers(frozenset(names), domain) is expected


def _inventory(tmp_path: Path, apps: dict, settings: dict | None = None) -> inventory.Inventory:
    root = tmp_path / "inv"
    (root / "customers").mkdir(parents=True)
    (root / "hostctl.yaml").write_text(yaml.safe_dump(settings or {"tls": {"https_listen": "127.0.0.1:8443"}}))
    (root / "customers" / "shop.yaml").write_text(yaml.safe_dump({"apps": apps}))
    return inventory.load(root)


APP = {"domains": ["shop.example", "www.shop.example"], "wsgi": "a:b"}


# (tls: setting, names of the ready certificate or None) -> (state, HTTP servers as (domains, redirect), HTTPS domains)
DECISIONS = [
    ("no tls", None, None, "off", [(["shop.example", "www.shop.example"], False)], []),
    ("acme, no certificate yet", {"acme": True}, None, "pending", [(["shop.example", "www.shop.example"], False)], []),
    ("acme, certificate for other names", {"acme": True}, ["other.example"], "pending",
     [(["shop.example", "www.shop.example"], False)], []),
    ("acme, issued", {"acme": True}, ["shop.example", "www.shop.example"], "ready",
     [(["shop.example", "www.shop.example"], True)], ["shop.example", "www.shop.example"]),
    ("a domain was added since", {"acme": True}, ["shop.example"], "partial",
     [(["shop.example"], True), (["www.shop.example"], False)], ["shop.example"]),
    ("https_only off keeps HTTP serving the app", {"acme": True, "https_only": False}, ["shop.example", "www.shop.example"], "ready",
     [(["shop.example", "www.shop.example"], False)], ["shop.example", "www.shop.example"]),
    ("wildcard certificate", {"acme": True}, ["shop.example", "*.shop.example"], "ready",
     [(["shop.example", "www.shop.example"], True)], ["shop.example", "www.shop.example"]),
]


@pytest.mark.parametrize("case", DECISIONS, ids=[c[0] for c in DECISIONS])
def test_decide(tmp_path: Path, case: tuple) -> None:
    _name, tls_cfg, names, state, http, https = case
    app = dict(APP, **({"tls": tls_cfg} if tls_cfg else {}))
    inv = _inventory(tmp_path, {"web": app})
    spec = inv.apps()[0]
    ready = {f"{inv.settings.tls.cert_dir}/shop_web/fullchain.pem": frozenset(names)} if names else {}
    decision = tls.decide(spec, inv.settings, ready)
    assert decision.state == state
    assert [(list(s.domains), s.redirect) for s in decision.http_servers] == http
    assert list(decision.https_domains) == https
    if https:
        assert decision.certificate == f"{inv.settings.tls.cert_dir}/shop_web/fullchain.pem"
        assert decision.https_port_suffix == ":8443"
    assert (tls.describe(spec, decision) is None) == (state == "off")


def test_plan_lines_say_what_is_served(tmp_path: Path) -> None:
    inv = _inventory(tmp_path, {"web": dict(APP, tls={"acme": True})})
    spec = inv.apps()[0]
    pending = tls.describe(spec, tls.decide(spec, inv.settings, {}))
    assert pending == ("shop_web: HTTP only until its certificate exists (acme: true; `hostctl certs issue` obtains ACME ones), "
                       "then HTTPS for shop.example, www.shop.example")
    partial = tls.describe(spec, tls.decide(spec, inv.settings, {tls.cert_spec(spec, inv.settings).certificate: frozenset({"shop.example"})}))
    assert partial == ("shop_web: HTTPS for shop.example; HTTP only for www.shop.example until the certificate covers it "
                       "(`hostctl certs issue`)")


def test_port_suffix() -> None:
    assert tls.port_suffix("443") == "" and tls.port_suffix("[::]:443") == ""
    assert tls.port_suffix("127.0.0.1:8443") == ":8443"


def test_hsts_only_when_asked(tmp_path: Path) -> None:
    inv = _inventory(tmp_path, {"web": dict(APP, tls={"acme": True, "hsts": True}), "api": dict(domains=["api.shop.example"], wsgi="a:b", tls={"acme": True})})
    ready = {tls.cert_spec(a, inv.settings).certificate: frozenset(a.config.domains) for a in inv.apps()}
    hsts = {a.name: tls.decide(a, inv.settings, ready).hsts_max_age for a in inv.apps()}
    assert hsts == {"web": 63072000, "api": None}


# --- certificate facts (certs.py reads files) -------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> CA:
    return CA.create()


def test_parse_facts(ca: CA) -> None:
    cert, key = ca.issue(["shop.example", "www.shop.example"], days=40)
    facts = certs.parse(cert, key, "c.pem")
    assert facts.names == {"shop.example", "www.shop.example"}
    assert facts.issuer == "hostctl test CA"
    assert facts.key_matches and facts.error is None
    assert facts.unusable(certs.now_utc()) is None
    assert facts.days_left(certs.now_utc()) in (39, 40)


@pytest.mark.parametrize("kind, expected", [
    ("expired", "it expired on "),
    ("not yet valid", "it is not valid before "),
    ("other key", "its key does not match the certificate"),
    ("garbage key", "the key is not an unencrypted PEM private key"),
])
def test_unusable(ca: CA, kind: str, expected: str) -> None:
    if kind == "expired":
        cert, key = ca.issue(["a.example"], days=-1, not_before_days=-10)
    elif kind == "not yet valid":
        cert, key = ca.issue(["a.example"], days=20, not_before_days=2)
    else:
        cert, _ = ca.issue(["a.example"])
        key = ca.issue(["a.example"])[1] if kind == "other key" else b"-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n"
    why = certs.parse(cert, key, "c.pem").unusable(certs.now_utc())
    assert why is not None and why.startswith(expected), why


def test_provided_certificates_are_validated_per_customer(tmp_path: Path, ca: CA) -> None:
    own = tmp_path / "inv" / "own"
    ca.write(own, "good", ["good.example"])
    ca.write(own, "old", ["old.example"], days=-1, not_before_days=-30)
    ca.write(own, "narrow", ["narrow.example"])
    cert, _ = ca.issue(["mixed.example"])
    (own / "mixed.pem").write_bytes(cert)
    (own / "mixed.key").write_bytes(ca.issue(["mixed.example"])[1])
    apps = {name: {"domains": [f"{name}.example"] + (["www.narrow.example"] if name == "narrow" else []), "wsgi": "a:b",
                   "tls": {"certificate": f"own/{name}.pem", "key": f"own/{name}.key"}}
            for name in ("good", "old", "narrow", "mixed", "gone")}
    root = tmp_path / "inv"
    (root / "customers").mkdir(parents=True)
    (root / "hostctl.yaml").write_text("isolation: {users: invoker}\n")
    (root / "customers" / "shop.yaml").write_text(yaml.safe_dump({"apps": apps}, sort_keys=False))
    with pytest.raises(InventoryError) as caught:
        load_checked(root, partial=False)
    got = [str(p) for p in caught.value.problems]
    assert len(got) == 4, got
    assert got[0].startswith(f"customers/shop.yaml:14: apps.old.tls.certificate: customer 'shop': '{own}/old.pem' cannot be used: it expired on ")
    assert got[1] == (f"customers/shop.yaml:22: apps.narrow.tls.certificate: customer 'shop': '{own}/narrow.pem' does not cover "
                      "'www.narrow.example' (it covers narrow.example)")
    assert got[2] == (f"customers/shop.yaml:30: apps.mixed.tls.key: customer 'shop': '{own}/mixed.pem' cannot be used: "
                      "its key does not match the certificate")
    assert got[3] == f"customers/shop.yaml:36: apps.gone.tls.certificate: customer 'shop': '{own}/gone.pem' does not exist"


def test_ready_lists_only_usable_certificates(tmp_path: Path, ca: CA) -> None:
    inv = _inventory(tmp_path, {"web": dict(APP, tls={"acme": True}), "old": dict(domains=["old.shop.example"], wsgi="a:b", tls={"acme": True})})
    base = Path(inv.settings.tls.cert_dir)
    for name, kwargs in (("shop_web", {}), ("shop_old", {"days": -1, "not_before_days": -30})):
        cert, key = ca.issue(["shop.example"], **kwargs)
        (base / name).mkdir(parents=True)
        (base / name / tls.CERT_FILE).write_bytes(cert)
        (base / name / tls.KEY_FILE).write_bytes(key)
    assert certs.ready(inv) == {str(base / "shop_web" / tls.CERT_FILE): frozenset({"shop.example"})}


def test_production_init_renders_the_renewal_timer(tmp_path: Path) -> None:
    from hostctl.targets import scaffold

    root = tmp_path / "inv"
    created = {p.name for p in scaffold.init(root, production=True)}
    assert {"hostctl-certs.service", "hostctl-certs.timer"} <= created
    service = (root / "system" / "hostctl-certs.service").read_text()
    assert f" -i {root} certs renew\n" in service and "Type=oneshot" in service
    timer = (root / "system" / "hostctl-certs.timer").read_text()
    assert "OnCalendar=*-*-* 00,12:00:00" in timer and "Persistent=true" in timer
    settings = inventory.load(root).settings.tls
    assert (settings.https_listen, settings.cert_dir) == ("443", "/etc/hostctl/certs")


@pytest.mark.parametrize("listen, expected", [
    ("80", ("127.0.0.1", 80)), ("0.0.0.0:8080", ("127.0.0.1", 8080)), ("127.0.0.1:8080", ("127.0.0.1", 8080)),
    ("[::]:80", ("::1", 80)), ("[::1]:8080", ("::1", 8080)), ("10.0.0.5:80", ("10.0.0.5", 80)),
])
def test_probe_address(listen: str, expected: tuple[str, int]) -> None:
    from hostctl.acme.issuance import probe_address

    assert probe_address(listen) == expected
