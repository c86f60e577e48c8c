"""HTTPS through a real nginx with certificates from a private test CA: SNI, redirects, the challenge path."""

from __future__ import annotations

import json
import ssl
from pathlib import Path

import pytest
from cryptography import x509

from tests.harness import Sandbox, free_port, wait_for
from tests.pki import CA
from tests.tlsclient import context, handshake, http_get, https

pytestmark = pytest.mark.integration

MOZILLA_INTERMEDIATE_TLS12 = {"ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384",
                              "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305"}


def tls_sandbox() -> Sandbox:
    return Sandbox({"tls": {"https_listen": f"127.0.0.1:{free_port()}", "webroot": "../acme", "cert_dir": "../certs"}})


def https_port(box: Sandbox) -> int:
    import yaml

    settings = yaml.safe_load((box.inventory / "hostctl.yaml").read_text())
    return int(settings["tls"]["https_listen"].rpartition(":")[2])


@pytest.fixture
def tls_box():
    box = tls_sandbox()
    yield box
    box.cleanup()


def test_each_customer_gets_its_own_certificate_http_redirects_and_the_challenge_stays_on_http(tls_box: Sandbox, make_server) -> None:
    box, ca = tls_box, CA.create()
    own = box.path("own")
    certs = {name: ca.write(own, name, domains) for name, domains in
             (("alpha", ["alpha.test", "www.alpha.test"]), ("beta", ["beta.test"]))}
    box.write_customer("alpha", {"apps": {"web": box.echo_app(["alpha.test", "www.alpha.test"], env={"CUSTOMER": "alpha"},
                                                              tls={"certificate": str(certs["alpha"][0]), "key": str(certs["alpha"][1]), "hsts": True})}})
    box.write_customer("beta", {"apps": {"web": box.echo_app(["beta.test"], env={"CUSTOMER": "beta"},
                                                             tls={"certificate": str(certs["beta"][0]), "key": str(certs["beta"][1]), "https_only": False})}})
    box.write_customer("gamma", {"apps": {"web": box.echo_app(["gamma.test"], env={"CUSTOMER": "gamma"}, tls={"acme": True})}})
    port = https_port(box)

    plan = box.hostctl("plan", "--no-diff")
    assert "  alpha_web: HTTPS for alpha.test, www.alpha.test" in plan.stdout
    assert "  gamma_web: HTTP only until its certificate exists (acme: true;" in plan.stdout

    server = make_server(box)
    box.hostctl("apply")
    server.wait_json("beta.test")
    server.wait_json("gamma.test")

    # SNI: every name gets its own customer's certificate, verified against the test CA, and its own app.
    serials = {name: x509.load_pem_x509_certificate(Path(paths[0]).read_bytes()).serial_number for name, paths in certs.items()}
    for host, customer in (("alpha.test", "alpha"), ("www.alpha.test", "alpha"), ("beta.test", "beta")):
        response = wait_for(lambda: https(port, host, ca.pem), what=f"HTTPS for {host}")
        assert response.status == 200, response
        assert json.loads(response.body)["customer"] == customer
        assert response.cert is not None and response.cert.serial_number == serials[customer]
        assert response.version in ("TLSv1.2", "TLSv1.3")
    alpha = https(port, "alpha.test", ca.pem)
    assert alpha.headers["strict-transport-security"] == "max-age=63072000"
    assert "strict-transport-security" not in https(port, "beta.test", ca.pem).headers

    # HTTP redirects to HTTPS (with the port, as HTTPS is not on 443), keeping path and query.
    redirect = wait_for(lambda: (r := http_get(box.port, "www.alpha.test", "/x/y?z=1")).status == 301 and r, what="the redirect")
    assert redirect.status == 301 and redirect.headers["location"] == f"https://www.alpha.test:{port}/x/y?z=1"
    # ... except the ACME challenge path, which stays on plain HTTP and is served from the webroot.
    challenge_dir = box.path("acme") / ".well-known" / "acme-challenge"
    challenge_dir.mkdir(parents=True)
    (challenge_dir / "probe-token").write_text("probe-token.thumbprint")
    for host in ("alpha.test", "beta.test", "gamma.test"):
        probe = http_get(box.port, host, "/.well-known/acme-challenge/probe-token")
        assert (probe.status, probe.body) == (200, b"probe-token.thumbprint"), host
    # https_only: false keeps the app on HTTP too; an app whose certificate does not exist yet is HTTP only.
    assert json.loads(http_get(box.port, "beta.test").body)["customer"] == "beta"
    assert json.loads(http_get(box.port, "gamma.test").body)["customer"] == "gamma"
    with pytest.raises(ssl.SSLError):
        handshake(port, "gamma.test", context(ca.pem)).close()  # the default server refuses unknown names

    # The Mozilla intermediate profile: HTTP/2 by ALPN, TLS 1.3, and TLS 1.2 only with ECDHE AEAD ciphers.
    with handshake(port, "alpha.test", context(ca.pem, alpn=("h2", "http/1.1"))) as sock:
        assert sock.selected_alpn_protocol() == "h2" and sock.version() == "TLSv1.3"
    with handshake(port, "alpha.test", context(ca.pem, max_version=ssl.TLSVersion.TLSv1_2)) as sock:
        assert sock.version() == "TLSv1.2" and sock.cipher()[0] in MOZILLA_INTERMEDIATE_TLS12
    legacy = context(ca.pem, max_version=ssl.TLSVersion.TLSv1_2)
    legacy.set_ciphers("AES128-SHA")  # static RSA, CBC: not in the profile
    with pytest.raises(ssl.SSLError):
        handshake(port, "alpha.test", legacy).close()

    # An expired certificate is a validation error naming the customer, which is held back: none of its
    # files is written (the quarantine record names it).
    before = box.snapshot()
    cert, key = ca.issue(["alpha.test", "www.alpha.test"], days=-1, not_before_days=-40)
    certs["alpha"][0].write_bytes(cert)
    certs["alpha"][1].write_bytes(key)
    failed = box.hostctl("apply", check=False)
    assert failed.returncode == 1
    assert "apps.web.tls.certificate: customer 'alpha':" in failed.stderr and "cannot be used: it expired on" in failed.stderr
    assert "Error: 1 customer(s) quarantined; their last-known-good files stay live:" in failed.stderr
    after = box.snapshot()
    unchanged = lambda files: {k: v for k, v in files.items() if "/own/" not in k and not k.endswith("/quarantine.json")}
    assert unchanged(after) == unchanged(before)
    assert https(port, "alpha.test", ca.pem).cert.serial_number == serials["alpha"]  # still the last good one
