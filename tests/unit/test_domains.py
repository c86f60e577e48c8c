"""Names a customer may claim (issue 11, item 5): nginx's server_name semantics, nginx -T parsing, own names."""

from __future__ import annotations

from pathlib import Path

import pytest

from hostctl.engine import checks
from hostctl.engine.core import nginxdump
from hostctl.inventory import domains
from hostctl.render import listens
from hostctl.inventory import loader as inventory
from hostctl.errors import InventoryError
from hostctl.inventory.schema import Settings
from tests.unit.test_validation import write_inventory


@pytest.mark.parametrize("a, b, want", [
    ("*.a.org", "b.a.org", True), ("*.a.org", "x.b.a.org", True), ("*.a.org", "a.org", False),
    ("*.a.org", "*.b.a.org", True), ("*.b.a.org", "*.a.org", True), ("*.a.org", "ba.org", False),
    ("a.org", "a.org", True), ("*.a.org", "*.b.org", False),
])
def test_overlap_follows_nginx_leading_wildcards(a: str, b: str, want: bool) -> None:
    assert domains.overlap(a, b) is want


@pytest.mark.parametrize("domain, pattern, want", [
    ("shop.example", "shop.example", True), ("shop.example", "SHOP.example", True),
    ("x.shop.example", ".shop.example", True), ("shop.example", ".shop.example", True),
    ("*.shop.example", "pay.shop.example", True), ("pay.shop.example", "*.shop.example", True),
    ("mail.shop.example", "mail.*", True), ("*.shop.example", "mail.*", True), ("web.shop.example", "mail.*", False),
    ("api.shop.example", r"~^api\d*\.", True), ("*.shop.example", r"~\.shop\.example$", True),
    ("other.example", r"~^api\.", False), ("x.example", "~[", False),  # a regex Python cannot compile is skipped
    ("x.example", "_", False), ("x.example", "", False),
])
def test_foreign_overlap(domain: str, pattern: str, want: bool) -> None:
    assert domains.foreign_overlap(domain, pattern) is want


DUMP = r"""\
nginx: the configuration file /etc/nginx/nginx.conf syntax is ok
# configuration file /etc/nginx/nginx.conf:
http {
    include /etc/nginx/sites-enabled/*;
    map $host $x { default 1; server 2; }
}
stream { server { listen 5353; } }

# configuration file /etc/nginx/sites-enabled/ops:
# the operator's own vhost
server {
    listen 80;
    listen [::]:80;
    server_name ops.hosting.example "panel.hosting.example" ~^shop\d+\.hosting\.example$; # comment
    location / { return 200 "}{;"; }
}
server {
    listen 127.0.0.1:8081;
    server_name internal.example;
}
upstream u { server 127.0.0.1:9000; }

# configuration file /etc/hostctl/nginx/acme_web.conf:
server {
    listen 80;
    server_name acme.example;
}
"""


def test_nginx_dump_servers_outside_hostctls_directory() -> None:
    found = nginxdump.foreign_servers(DUMP, ("/etc/hostctl/nginx",))
    assert [(s.where, s.names, s.listens) for s in found] == [
        ("/etc/nginx/sites-enabled/ops:2", ("ops.hosting.example", "panel.hosting.example", r"~^shop\d+\.hosting\.example$"), (("*", "80"), ("[::]", "80"))),
        ("/etc/nginx/sites-enabled/ops:8", ("internal.example",), (("127.0.0.1", "8081"),)),
    ]


def test_the_engine_holds_back_a_candidate_block_whose_name_another_server_serves() -> None:
    """What the engine checks on every server (apply and deploy): candidate server blocks against ``nginx -T``."""
    foreign = nginxdump.foreign_servers(DUMP, ("/etc/hostctl/nginx",))
    blocks = {
        "/etc/hostctl/nginx/evil_web.conf": ("evil", "server {\n    listen 80;\n    server_name evil.example shop12.hosting.example;\n}\n"),
        "/etc/hostctl/nginx/fine_web.conf": ("fine", "server {\n    listen 80;\n    server_name fine.example internal.example;\n}\n"),
        "/etc/hostctl/nginx/wild_web.conf": ("wild", "server {\n    listen 80;\n    server_name *.hosting.example;\n}\n"),
    }
    got = nginxdump.collisions(blocks, foreign)
    assert [(c, p.rsplit("/", 1)[1]) for c, p, _ in got] == [("evil", "evil_web.conf"), ("wild", "wild_web.conf")]
    assert got[0][2].startswith("'shop12.hosting.example' collides with server_name '~^shop")
    assert "of a server hostctl did not write (/etc/nginx/sites-enabled/ops:2)" in got[0][2]
    # internal.example is served by the operator on 127.0.0.1:8081 only: no shared address, no collision


@pytest.mark.parametrize("ours, theirs, want", [
    (("80",), ("80",), True), (("80",), ("127.0.0.1:80",), True), (("127.0.0.1:8080",), ("8080",), True),
    (("80",), ("8080",), False), (("127.0.0.1:80",), ("127.0.0.2:80",), False),
    (("80",), ("[::]:80",), False), (("[::]:80",), ("[::]:80",), True), (("[::]:80",), ("[::1]:80",), True),
])
def test_shares_listen(ours: tuple, theirs: tuple, want: bool) -> None:
    assert nginxdump.shares_listen(nginxdump.hostctl_listens(ours), nginxdump.hostctl_listens(theirs)) is want


@pytest.mark.parametrize("listen, v6, want", [
    ("80", "auto", ("80", "[::]:80")), ("0.0.0.0:80", "auto", ("0.0.0.0:80", "[::]:80")),
    ("127.0.0.1:8080", "auto", ("127.0.0.1:8080",)), ("80", "off", ("80",)),
    ("127.0.0.1:80", "[::1]:80", ("127.0.0.1:80", "[::1]:80")), ("[::]:80", "auto", ("[::]:80",)),
])
def test_ipv6_twin_of_the_listen(listen: str, v6: str, want: tuple) -> None:
    assert listens.http(Settings(nginx={"listen": listen, "listen_v6": v6})) == want


def test_own_names_from_hostname_and_etc_hosts() -> None:
    hosts = "127.0.0.1 localhost\n127.0.1.1 web1.hosting.example web1 # me\n::1 localhost ip6-localhost\n10.0.0.5 db\n"
    assert checks.own_names("WEB1", hosts) == {"web1", "web1.hosting.example"}


@pytest.mark.parametrize("test_command, dump, hosts, want", [
    ("nginx -t -q", None, False, ["nginx", "-T"]),
    ("nginx -t -q -p /x -c /x/n.conf", None, False, ["nginx", "-T", "-p", "/x", "-c", "/x/n.conf"]),
    (None, None, False, None), ("nginx -t -q", "", False, None), ("nginx -t -q", "/usr/sbin/nginx -T", False, ["/usr/sbin/nginx", "-T"]),
    ("nginx -t -q", None, True, None),
])
def test_dump_command(test_command, dump, hosts, want) -> None:
    data = {"nginx": {"test_command": test_command, "dump_command": dump}}
    if hosts:
        data["hosts"] = {"a": {"address": "a.example", "emperor_dir": "/e", "nginx_dir": "/n", "run_dir": "/r", "log_dir": "/l",
                               "state_dir": "/s"}}
    assert checks.dump_command(Settings(**data)) == want


def test_domain_problems_name_the_customer_file_and_the_other_server(tmp_path: Path) -> None:
    root = write_inventory(tmp_path / "inv", 'nginx: {listen: "80"}\n', {
        "acme.yaml": "apps:\n  web:\n    domains: [acme.example, panel.hosting.example]\n    wsgi: a:b\n",
        "evil.yaml": "apps:\n  web:\n    domains: ['*.ops.hosting.example', shop7.hosting.example]\n    wsgi: a:b\n",
        "fine.yaml": "apps:\n  web:\n    domains: [internal.example]\n    wsgi: a:b\n",  # the other server is on 8081
    })
    inv = inventory.load(root)
    got = checks.domain_problems(inv, {"web1.ops.hosting.example"}, nginxdump.foreign_servers(DUMP, ("/etc/hostctl/nginx",)))
    assert [str(p) for p in got] == [
        "customers/acme.yaml:3: apps.web.domains[1]: 'panel.hosting.example' collides with server_name 'panel.hosting.example' "
        "of a server hostctl did not write (/etc/nginx/sites-enabled/ops:2); nginx would send one of them the other's visitors",
        "customers/evil.yaml:3: apps.web.domains[0]: '*.ops.hosting.example' covers 'web1.ops.hosting.example', a name of this host "
        "(its hostname or /etc/hosts)",
        "customers/evil.yaml:3: apps.web.domains[1]: 'shop7.hosting.example' collides with server_name '~^shop\\\\d+\\\\.hosting\\\\.example$' "
        "of a server hostctl did not write (/etc/nginx/sites-enabled/ops:2); nginx would send one of them the other's visitors",
    ]


def test_a_customers_wildcard_may_cover_its_own_names(tmp_path: Path) -> None:
    root = write_inventory(tmp_path / "inv", None, {
        "alpha.yaml": "apps:\n  web: {domains: ['*.shop.example', www.shop.example], wsgi: a:b}\n"
                      "  api: {domains: [api.shop.example], wsgi: a:b}\n",
        "beta.yaml": "apps:\n  web: {domains: [shop.example, other.example], wsgi: a:b}\n",
    })
    assert len(inventory.load(root).apps()) == 3


def test_wildcard_check_is_linear_not_pairwise(tmp_path: Path) -> None:
    """5,000 customers with a wildcard each and 5,000 exact names: a clash among them is still found."""
    claims = [domains.Claim(f"*.c{i}.example", f"c{i}", f"customers/c{i}.yaml", (), 1) for i in range(5000)]
    claims += [domains.Claim(f"www.c{i}.example", f"c{i}", f"customers/c{i}.yaml", (), 2) for i in range(5000)]
    claims.append(domains.Claim("x.c42.example", "intruder", "customers/intruder.yaml", (), 1))
    clashes = domains.wildcard_clashes(claims)
    assert [(a.customer, b.customer) for a, b in clashes] == [("intruder", "c42")]
