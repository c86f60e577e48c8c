"""TLS on a server reached by deploy, over real SSH: certificates shipped to the host that serves them.

Host 'web' is this machine through a real sshd, served by a real uWSGI Emperor
and nginx (`hostctl serve` on the host's directories). The control machine
holds the operator's certificate files and runs the ACME client; the engine
writes what the host needs into its root-only certificate directory, and an
ACME HTTP-01 challenge is answered by the host's own nginx from its webroot.
A customer whose certificate cannot be had is held with the reason; the
others go live.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Iterator

import pytest
import yaml
from cryptography import x509

from hostctl.targets import deploy
from tests.harness import Sandbox, Server, free_port, wait_for
from tests.pebble import Pebble
from tests.pki import CA
from tests.sshd import hosts_for
from tests.tlsclient import http_get, https

pytestmark = pytest.mark.integration


class TlsHost:
    """A multi-host inventory (``box``, the control machine) with one host, 'web', served by a real Emperor and nginx."""

    def __init__(self, box: Sandbox, web: Sandbox, ssh, tls: dict | None = None, **host_extra: object) -> None:
        self.box, self.web = box, web
        self.https_port = free_port()
        self.server: Server | None = None
        serve = web.root / "run" / "serve"
        settings = yaml.safe_load((box.inventory / "hostctl.yaml").read_text())
        settings["tls"] = {"https_listen": f"127.0.0.1:{self.https_port}", "webroot": "../acme", "cert_dir": "../certs", **(tls or {})}
        settings["hosts"] = {"web": ssh.start("web").settings(
            **{key: str(web.root / d) for key, d in (("emperor_dir", "vassals"), ("nginx_dir", "nginx"), ("run_dir", "run"),
                                                      ("log_dir", "log"), ("state_dir", "state"))},
            nginx={"listen": f"127.0.0.1:{web.port}",
                   "test_command": f"nginx -t -q -p {serve} -c {serve}/nginx.conf -e stderr",
                   "reload_command": f"kill -HUP $(cat {serve}/nginx.pid)"}, **host_extra)}
        box.write_settings(settings)

    def customer(self, name: str, **tls: object) -> None:
        app = self.box.echo_app([f"{name}.test"], env={"CUSTOMER": name}, **({"tls": tls} if tls else {}))
        self.box.write_customer(name, {"host": "web", "apps": {"web": app}})

    def deploy(self, check: bool = True):
        return self.box.hostctl("deploy", check=check, timeout=300)

    def host_cert_dir(self, name: str) -> Path:
        return self.web.root / "state" / "certs" / name


@pytest.fixture
def tls_host(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Iterator[TlsHost]:
    if os.geteuid() != 0:
        pytest.skip("needs root (sshd logs in as root; the certificate directory is root's)")
    box, web = Sandbox(), Sandbox()
    monkeypatch.setenv("XDG_CACHE_HOME", str(box.root / "cache"))  # deploycache, for this test alone
    pebble: Pebble | None = None
    try:
        with hosts_for(box) as ssh:
            extra: dict = {}
            tls: dict = {}
            if getattr(request, "param", None) == "acme":
                # outside the sandboxes: Server.stop() treats processes mentioning them as left over
                pebble = Pebble(Path(tempfile.mkdtemp(prefix="hostctl-pebble-")), http_port=web.port)  # validates against the HOST's nginx
                tls = {"acme": {"directory": pebble.directory, "ca_bundle": str(pebble.ca_bundle), "email": "ops@hostctl.test", "interval": 0}}
                extra = {"acme_webroot": str(web.root / "acme-challenge")}
            setup = TlsHost(box, web, ssh, tls, **extra)
            setup.pebble = pebble  # type: ignore[attr-defined]
            try:
                yield setup
            finally:
                if setup.server is not None:
                    setup.server.stop()
    finally:
        if pebble is not None:
            pebble.stop()
            shutil.rmtree(pebble.workdir, ignore_errors=True)
        web.cleanup()
        box.cleanup()


def _mode(path: Path) -> tuple[int, int, str]:
    st = path.lstat()
    return st.st_uid, st.st_gid, oct(stat.S_IMODE(st.st_mode))


def test_deploy_ships_operator_certificates_to_the_host_and_holds_a_customer_whose_certificate_is_unusable(tls_host: TlsHost) -> None:
    t, ca = tls_host, CA.create()
    own = t.box.path("own")  # on the control machine only
    alpha_cert, alpha_key = ca.write(own, "alpha", ["alpha.test"])
    gamma_cert, _ = ca.write(own, "gamma", ["gamma.test"])
    _, other_key = ca.write(own, "other", ["other.test"])
    t.customer("alpha", certificate=str(alpha_cert), key=str(alpha_key))
    t.customer("beta")
    t.customer("gamma", certificate=str(gamma_cert), key=str(other_key))  # its key does not match
    planned = t.box.hostctl("plan", "--host", "web").stdout  # read from the server, nothing changes there
    assert "TLS:\n  alpha_web: HTTPS for alpha.test\n" in planned, planned
    assert re.search(r"  held, nothing deployed for gamma: \S*gamma\.pem: .*key does not match", planned), planned
    t.server = server = Server(t.web)

    done = t.deploy(check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    assert re.search(r"gamma: \S*gamma\.pem: .*key does not match", done.stdout), done.stdout  # held, with the reason
    response = wait_for(lambda: https(t.https_port, "alpha.test", ca.pem), what="HTTPS for alpha.test on the host")
    assert response.status == 200 and json.loads(response.body)["customer"] == "alpha"
    assert response.cert.serial_number == x509.load_pem_x509_certificate(alpha_cert.read_bytes()).serial_number
    assert http_get(t.web.port, "alpha.test").status == 301  # https_only: plain HTTP redirects
    assert server.wait_json("beta.test")["customer"] == "beta"
    assert server.unserved("gamma.test"), "a held new customer gets nothing rather than plain HTTP"

    # the host's copy: a root-only directory, the key 0600 root; nothing under a customer's directories
    shipped = t.host_cert_dir("alpha_web")
    assert _mode(shipped) == (0, 0, "0o700")
    assert _mode(shipped / "privkey.pem")[::2] == (0, "0o600")
    assert (shipped / "privkey.pem").read_bytes() == alpha_key.read_bytes()
    assert (shipped / "fullchain.pem").read_bytes() == alpha_cert.read_bytes()
    assert _mode(t.web.root / "state" / "certs")[::2] == (0, "0o700")
    server_block = (t.web.root / "nginx" / "alpha_web.conf").read_text()
    assert f"ssl_certificate_key {shipped}/privkey.pem;" in server_block and str(own) not in server_block
    assert not list(t.web.root.rglob("*.hostctl-tmp-*")), "staging files were left behind"

    # the operator replaces the certificate on the control machine: the next deploy ships and serves it
    alpha_cert, alpha_key = ca.write(own, "alpha", ["alpha.test"])
    t.customer("gamma")  # and gamma drops TLS: it goes live on HTTP
    again = t.deploy()
    assert "2 added, 1 changed, 0 removed" in again.stdout, again.stdout
    new_serial = x509.load_pem_x509_certificate(alpha_cert.read_bytes()).serial_number
    wait_for(lambda: https(t.https_port, "alpha.test", ca.pem).cert.serial_number == new_serial, what="the new certificate to be served")
    assert (shipped / "privkey.pem").read_bytes() == alpha_key.read_bytes()
    assert json.loads(http_get(t.web.port, "gamma.test").body)["customer"] == "gamma"
    report = deploy.deploy(t.box.inventory)  # in this process, to see that nothing was loaded or rendered
    assert report.ok and report.outcomes["web"].plans == [], "in sync: the recorded digest answered, no plan made"
    # only the certificate changes (the inventory's bytes do not): deploy still notices and ships it
    alpha_cert, alpha_key = ca.write(own, "alpha", ["alpha.test"])
    renewed = t.deploy()
    assert "0 added, 1 changed, 0 removed" in renewed.stdout and "certificates shipped: alpha_web" in renewed.stdout, renewed.stdout
    new_serial = x509.load_pem_x509_certificate(alpha_cert.read_bytes()).serial_number
    wait_for(lambda: https(t.https_port, "alpha.test", ca.pem).cert.serial_number == new_serial, what="the third certificate to be served")

    # alpha leaves the host: its key does not stay behind there
    (t.box.inventory / "customers" / "alpha.yaml").unlink()
    gone = t.deploy()
    assert "certificates removed: alpha_web" in gone.stdout, gone.stdout
    assert not shipped.exists() and server.wait_unserved("alpha.test") is None


@pytest.mark.parametrize("tls_host", ["acme"], indirect=True)
def test_deploy_gets_an_acme_certificate_through_the_hosts_nginx_and_holds_a_customer_whose_challenge_fails(tls_host: TlsHost) -> None:
    t = tls_host
    pebble: Pebble = t.pebble  # type: ignore[attr-defined]
    t.customer("one", acme=True)
    t.customer("bad", acme=True)
    t.customer("plain")
    pebble.resolve("bad.test", "127.0.0.2")  # nothing listens there: the CA cannot reach a server for it
    planned = t.box.hostctl("plan", "--host", "web").stdout
    assert "  one_web: HTTP only until its certificate exists (acme: true; `hostctl deploy` obtains ACME ones)" in planned, planned
    t.server = server = Server(t.web)

    done = t.deploy(check=False)
    print(done.stdout)  # the issuing time, for the log
    assert done.returncode == 1, done.stdout + done.stderr
    assert re.search(r"issued one_web \(customer one\) in [0-9.]+ s", done.stdout), done.stdout
    assert re.search(r"bad: .*bad\.test.*; served on plain HTTP until a certificate is issued", done.stdout), done.stdout
    root = pebble.root_pem()
    response = wait_for(lambda: https(t.https_port, "one.test", root), what="HTTPS for one.test with Pebble's certificate")
    assert response.status == 200 and json.loads(response.body)["customer"] == "one"
    assert "Pebble" in response.cert.issuer.rfc4514_string()
    assert http_get(t.web.port, "one.test").status == 301
    assert json.loads(http_get(t.web.port, "bad.test").body)["customer"] == "bad"  # the others go on; bad stays reachable
    assert json.loads(http_get(t.web.port, "plain.test").body)["customer"] == "plain"

    shipped = t.host_cert_dir("one_web")
    assert _mode(shipped / "privkey.pem")[::2] == (0, "0o600")
    issued = t.box.path("certs") / "one_web" / "fullchain.pem"  # the control machine keeps what it ordered
    assert (shipped / "fullchain.pem").read_bytes() == issued.read_bytes()
    assert response.cert.serial_number == x509.load_pem_x509_certificate(issued.read_bytes()).serial_number
    challenges = t.web.root / "acme-challenge" / ".well-known" / "acme-challenge"
    assert challenges.is_dir() and list(challenges.iterdir()) == [], "challenge tokens are removed from the host"
    assert not (t.web.root / "state" / "certs" / "accounts").exists(), "the ACME account key stays on the control machine"

    # nothing due: no order, nothing shipped; bad is still reported (backing off), the others stay as they are
    again = t.deploy(check=False)
    assert "issued one_web" not in again.stdout and "bad: bad_web: no certificate yet; backing off" in again.stdout, again.stdout
    assert "web: no changes" in again.stdout
    assert https(t.https_port, "one.test", root).cert.serial_number == response.cert.serial_number
