"""ACME end to end: real certificates from Pebble through HTTP-01 answered by the rendered nginx."""

from __future__ import annotations

import json
import shutil
import ssl
import tempfile
from pathlib import Path

import pytest
from cryptography import x509

from tests.harness import Sandbox, free_port, wait_for
from tests.pebble import Pebble
from tests.tlsclient import context, handshake, http_get, https

pytestmark = pytest.mark.integration


@pytest.fixture
def acme_box():
    box = Sandbox()
    # outside the sandbox: Server.stop() treats processes mentioning the sandbox as left over
    pebble = Pebble(Path(tempfile.mkdtemp(prefix="hostctl-pebble-")), http_port=box.port)  # validates against nginx's HTTP port
    try:
        https_port = free_port()
        box.write_settings({
            "emperor_dir": "../vassals", "nginx_dir": "../nginx", "run_dir": "../run", "log_dir": "../log", "state_dir": "../state",
            "nginx": {"listen": f"127.0.0.1:{box.port}"}, "isolation": {"users": "invoker"}, "defaults": {"processes": 1},
            "tls": {"https_listen": f"127.0.0.1:{https_port}", "webroot": "../acme", "cert_dir": "../certs",
                    "acme": {"directory": pebble.directory, "ca_bundle": str(pebble.ca_bundle), "email": "ops@hostctl.test",
                             "interval": 0}},
        })
        yield box, pebble, https_port
    finally:
        pebble.stop()
        shutil.rmtree(pebble.workdir, ignore_errors=True)
        box.cleanup()


def _serial(box: Sandbox, name: str) -> int:
    return x509.load_pem_x509_certificate((box.path("certs") / name / "fullchain.pem").read_bytes()).serial_number


def test_acme_customers_get_certificates_from_pebble_and_a_failed_challenge_leaves_only_its_customer_on_http(acme_box, make_server) -> None:
    box, pebble, port = acme_box
    for name, domains in (("one", ["one.test", "www.one.test"]), ("two", ["two.test"]), ("bad", ["bad.test"])):
        box.write_customer(name, {"apps": {"web": box.echo_app(domains, env={"CUSTOMER": name}, tls={"acme": True})}})
    pebble.resolve("bad.test", "127.0.0.2")  # nothing listens there: the CA's validation cannot connect
    server = make_server(box)
    box.hostctl("apply")
    for name in ("one", "two", "bad"):
        server.wait_json(f"{name}.test")  # HTTP only: no certificate exists yet

    issued = box.hostctl("certs", "issue", check=False)
    assert issued.returncode == 1, issued
    assert "issued one_web (customer one) in " in issued.stdout and "issued two_web (customer two) in " in issued.stdout
    assert "FAILED bad_web (customer bad)" in issued.stdout and "bad.test" in issued.stdout
    assert "Error: 1 of 3 orders failed" in issued.stderr
    listing = box.hostctl("certs").stdout
    assert "Pebble Intermediate CA" in listing and "one.test, www.one.test" in listing
    assert "bad_web" in listing and "missing (last order failed" in listing

    # The next apply serves HTTPS with the new certificates; the failed customer stays on HTTP.
    box.hostctl("apply")
    root = pebble.root_pem()
    for host, customer in (("one.test", "one"), ("www.one.test", "one"), ("two.test", "two")):
        response = wait_for(lambda: https(port, host, root), what=f"HTTPS for {host}")
        assert response.status == 200 and json.loads(response.body)["customer"] == customer
        assert response.cert.serial_number == _serial(box, f"{customer}_web")
    wait_for(lambda: http_get(box.port, "one.test").status == 301, what="one.test to redirect")
    assert json.loads(http_get(box.port, "bad.test").body)["customer"] == "bad"
    with pytest.raises(ssl.SSLError):
        handshake(port, "bad.test", context(root)).close()

    # The failed certificate backs off instead of hammering the CA; a customer whose server block is not
    # live yet fails on hostctl's own challenge probe, before any order.
    box.write_customer("late", {"apps": {"web": box.echo_app(["late.test"], env={"CUSTOMER": "late"}, tls={"acme": True})}})
    again = box.hostctl("certs", "issue", check=False)
    assert again.returncode == 1
    assert "held bad_web (customer bad): no certificate yet; backing off after 1 failed order" in again.stdout
    assert ("FAILED late_web (customer late): nginx does not serve /.well-known/acme-challenge/ for late.test (no server block has this name); "
            "run `hostctl apply` first") in again.stdout

    # Renewal replaces a certificate and nginx serves the new one without an apply.
    before = _serial(box, "one_web")
    renewed = box.hostctl("certs", "renew", "one_web", "--force")
    assert "renewed one_web (customer one)" in renewed.stdout and "nginx reloaded" in renewed.stdout
    after = _serial(box, "one_web")
    assert after != before
    # nginx's old workers may take a moment to close their listeners after the reload
    wait_for(lambda: https(port, "one.test", root).cert.serial_number == after, what="the renewed certificate to be served")

    # Adding a domain: HTTP for it until a new certificate covers it, then HTTPS.
    box.write_customer("two", {"apps": {"web": box.echo_app(["two.test", "new.two.test"], env={"CUSTOMER": "two"}, tls={"acme": True})}})
    assert "two_web: HTTPS for two.test; HTTP only for new.two.test" in box.hostctl("plan", "--no-diff").stdout
    box.hostctl("apply")
    plain = wait_for(lambda: (r := http_get(box.port, "new.two.test")).status == 200 and r, what="new.two.test on HTTP")
    assert json.loads(plain.body)["customer"] == "two"
    box.hostctl("certs", "issue", "two_web")
    box.hostctl("apply")
    names = x509.load_pem_x509_certificate((box.path("certs") / "two_web" / "fullchain.pem").read_bytes()) \
        .extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert sorted(names) == ["new.two.test", "two.test"]
    response = wait_for(lambda: https(port, "new.two.test", root), what="HTTPS for new.two.test")
    assert json.loads(response.body)["customer"] == "two"
    wait_for(lambda: http_get(box.port, "new.two.test").status == 301, what="new.two.test to redirect")
