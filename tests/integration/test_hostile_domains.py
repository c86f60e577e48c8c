"""Hostile tenants, item 5 (issue 11): a customer cannot take names that are not its own.

Against a real Emperor and nginx: a wildcard over a neighbour's names is refused and
the neighbour keeps its traffic; unknown names get nothing on every address hostctl
listens on, IPv4 and IPv6, HTTP and HTTPS, under `hostctl serve` and with the
production include; a customer domain that another nginx server of the host already
serves is refused with that server's file and line (nginx itself only warns, and
``nginx -t -q`` hides the warning).
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from hostctl.targets import scaffold
from hostctl.render import templates
from hostctl.inventory.schema import Settings
from tests.harness import Sandbox, free_port, operator_nginx, wait_for

pytestmark = pytest.mark.integration


def answer(port: int, host: str, address: str = "127.0.0.1", timeout: float = 5.0) -> str:
    """What nginx says to a GET for ``host``: 'HTTP <status>', 'closed' (no answer at all) or 'refused'."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.connect((address, port))
    except ConnectionRefusedError:
        return "refused"
    conn = http.client.HTTPConnection(address, port, timeout=timeout)
    conn.sock = sock
    try:
        conn.request("GET", "/", headers={"Host": host})
        response = conn.getresponse()
        body = response.read()
        return f"HTTP {response.status} {body[:60]!r}"
    except (http.client.RemoteDisconnected, ConnectionResetError):
        return "closed"
    finally:
        conn.close()


def _echo(box: Sandbox, name: str, *domains: str) -> None:
    box.write_customer(name, {"apps": {"web": box.echo_app(list(domains), env={"CUSTOMER": name})}})


def test_a_wildcard_over_a_neighbours_names_is_refused_and_the_neighbour_keeps_them(sandbox: Sandbox, make_server) -> None:
    """Old code: evil's '*.shop.test' was applied and nginx gave evil the visitors of pay.shop.test's neighbours."""
    _echo(sandbox, "alpha", "shop.test", "www.shop.test")
    server = make_server(sandbox)
    sandbox.hostctl("apply")
    assert server.wait_json("www.shop.test")["customer"] == "alpha"
    _echo(sandbox, "evil", "evil.test", "*.shop.test")
    before = sandbox.snapshot()
    refused = sandbox.hostctl("apply", check=False)
    assert refused.returncode == 1
    assert ("customers/evil.yaml:5: apps.web.domains[1]: '*.shop.test' of customer 'evil' (customers/evil.yaml:5) covers "
            "'www.shop.test' of customer 'alpha' (customers/alpha.yaml:5)") in refused.stderr, refused.stderr
    assert sandbox.snapshot() == before, "nothing may be written for a customer whose file is refused"
    assert answer(sandbox.port, "pay.shop.test") == "closed"  # nobody's: the default server
    assert server.get_json("www.shop.test")["customer"] == "alpha"

    # IP literals and loopback names are refused the same way
    _echo(sandbox, "evil", "127.0.0.1", "app.localhost")
    refused = sandbox.hostctl("validate", check=False)
    assert refused.returncode == 1
    assert "'127.0.0.1' is an IP address" in refused.stderr and "'app.localhost' is a loopback name" in refused.stderr


def test_unknown_names_get_nothing_on_ipv4_and_ipv6_under_serve(make_server) -> None:
    """Old code: an unknown Host got the default server's 404 page over IPv4, and nothing listened on IPv6
    (with Debian's default site on [::]:80, IPv6 visitors got "Welcome to nginx" instead of the customer)."""
    port = free_port()
    box = Sandbox({"nginx": {"listen": str(port)}})
    box.port = port
    try:
        _echo(box, "alpha", "alpha.test")
        server = make_server(box)
        box.hostctl("apply")
        server.wait_json("alpha.test")
        for address in ("127.0.0.1", "::1"):
            assert answer(port, "alpha.test", address).startswith("HTTP 200"), address
            assert answer(port, "unknown.test", address) == "closed", address
            assert answer(port, "127.0.0.1", address) == "closed", address
        conf = (box.path("run") / "serve" / "nginx.conf").read_text()
        assert f"listen [::]:{port} default_server;" in conf and "return 444;" in conf
    finally:
        box.cleanup()


def _production_nginx(tmp: Path, http_port: int, https_port: int) -> tuple[Path, str]:
    """Debian's layout in miniature: a main nginx.conf that includes conf.d/*.conf, with hostctl's include there."""
    settings = Settings(nginx_dir=str(tmp / "hostctl-nginx"), nginx={"listen": str(http_port)},
                        tls={"https_listen": str(https_port)})
    include = scaffold.system_files(settings, templates.environment(None))["nginx-hostctl.conf"]
    (tmp / "conf.d").mkdir()
    (tmp / "hostctl-nginx").mkdir()
    (tmp / "conf.d" / "hostctl.conf").write_text(include)
    (tmp / "hostctl-nginx" / "acme_web.conf").write_text(
        f"server {{\n    listen {http_port};\n    listen [::]:{http_port};\n    server_name acme.test;\n"
        "    location / { return 200 \"acme\\n\"; }\n}\n")
    (tmp / "tmp").mkdir()
    main = tmp / "nginx.conf"
    main.write_text(f"""daemon off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/tmp/b; proxy_temp_path {tmp}/tmp/p; fastcgi_temp_path {tmp}/tmp/f;
    uwsgi_temp_path {tmp}/tmp/u; scgi_temp_path {tmp}/tmp/s;
    include {tmp}/conf.d/*.conf;
}}
""")
    return main, include


def test_the_production_include_closes_unknown_names_on_every_address(tmp_path: Path) -> None:
    """Old code: the include had no HTTP default server (an unknown name went to whichever customer nginx
    picked first) and listened on IPv4 only."""
    http_port, https_port = free_port(), free_port()
    main, include = _production_nginx(tmp_path, http_port, https_port)
    assert f"listen [::]:{http_port} default_server;" in include and f"listen [::]:{https_port} ssl http2 default_server;" in include
    proc = subprocess.Popen(["nginx", "-p", str(tmp_path), "-c", str(main), "-e", str(tmp_path / "error.log")],
                            stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(lambda: answer(http_port, "acme.test").startswith("HTTP 200"), what="nginx to serve acme.test")
        for address in ("127.0.0.1", "::1"):
            assert answer(http_port, "acme.test", address) == "HTTP 200 b'acme\\n'", address
            assert answer(http_port, "other.test", address) == "closed", address
            ctx = ssl.create_default_context()
            ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
            with socket.create_connection((address, https_port), timeout=5) as raw:
                with pytest.raises(ssl.SSLError, match="UNRECOGNIZED_NAME|unrecognized name"):
                    ctx.wrap_socket(raw, server_hostname="other.test")
    finally:
        os.killpg(proc.pid, signal.SIGQUIT)
        proc.wait(timeout=15)


def test_a_domain_another_nginx_server_serves_is_refused_with_its_file_and_line(sandbox: Sandbox) -> None:
    """Old code: `nginx -t -q` exited 0 (nginx only warns "conflicting server name ... ignored") and the
    customer's block went live next to the operator's vhost, and one of the two lost its visitors."""
    ops = sandbox.path("ops-nginx")
    test_command = operator_nginx(ops, sandbox.port, sandbox.path("nginx"))
    settings = yaml.safe_load((sandbox.inventory / "hostctl.yaml").read_text())
    settings["nginx"].update(test_command=test_command, reload_command="true")
    sandbox.write_settings(settings)
    _echo(sandbox, "alpha", "alpha.test")
    sandbox.hostctl("apply")
    _echo(sandbox, "evil", "evil.test", "panel.hosting.test")
    _echo(sandbox, "alpha", "alpha.test", "www.alpha.test")  # a neighbour's change in the same apply goes ahead
    held = sandbox.hostctl("apply", check=False)
    assert held.returncode == 1
    assert ("customers/evil.yaml:5: apps.web.domains[1]: 'panel.hosting.test' collides with server_name "
            f"'panel.hosting.test' of a server hostctl did not write ({ops}/sites/panel:2)") in held.stdout + held.stderr, held
    assert not list(sandbox.path("nginx").glob("evil*")) and not list(sandbox.path("vassals").glob("evil*"))
    assert "www.alpha.test" in (sandbox.path("nginx") / "alpha_web.conf").read_text()
    # what the old code relied on: `nginx -t -q` exits 0 on the clash (nginx only warns; the first server
    # wins), so a check by exit status lets it through
    (sandbox.path("nginx") / "evil_web.conf").write_text(
        f"server {{\n    listen {sandbox.port};\n    server_name evil.test panel.hosting.test;\n}}\n")
    quiet = subprocess.run(test_command.split(), capture_output=True, text=True)
    assert quiet.returncode == 0 and 'conflicting server name "panel.hosting.test"' in quiet.stderr
