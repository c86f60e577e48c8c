"""`hostctl certs`: the listing, and issue/renew outcomes that need no CA (CliRunner, no servers)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import yaml
from click.testing import CliRunner

from hostctl.acme import history as acme_history
from hostctl.acme.schedule import Failure, History
from hostctl.cli.main import cli
from hostctl.inventory import loader as inventory
from tests.harness import free_port
from tests.pki import CA


def _inventory(tmp_path: Path) -> Path:
    root = tmp_path / "inv"
    (root / "customers").mkdir(parents=True)
    (root / "hostctl.yaml").write_text(yaml.safe_dump({
        "nginx": {"listen": f"127.0.0.1:{free_port()}"},  # nothing listens: the challenge probe fails before any CA contact
        "isolation": {"users": "invoker"},
        "tls": {"acme": {"directory": "https://127.0.0.1:1/dir", "interval": 0}},
    }))
    CA.create("Example CA").write(root / "own", "shop", ["shop.example", "www.shop.example"], days=40)
    (root / "customers" / "shop.yaml").write_text(yaml.safe_dump({"apps": {
        "web": {"domains": ["shop.example", "www.shop.example"], "wsgi": "a:b",
                "tls": {"certificate": "own/shop.pem", "key": "own/shop.key"}},
        "blog": {"domains": ["blog.shop.example"], "wsgi": "a:b", "tls": {"acme": True}},
    }}))
    return root


def test_listing_shows_domains_issuer_days_and_state(tmp_path: Path) -> None:
    root = _inventory(tmp_path)
    settings = inventory.load(root).settings
    acme_history.save(settings, History(failures={"shop_blog": Failure(2, dt.datetime(2026, 1, 2, 3, 4, tzinfo=dt.timezone.utc), "boom")}))
    result = CliRunner().invoke(cli, ["-i", str(root), "certs"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["CERTIFICATE", "CUSTOMER", "SOURCE", "DAYS", "ISSUER", "DOMAINS", "STATE"]
    web = next(line for line in lines if line.startswith("shop_web"))
    assert web.split()[:4] == ["shop_web", "shop", "provided", "39"] and "Example CA" in web
    assert "shop.example, www.shop.example" in web and web.endswith("  ok")
    blog = next(line for line in lines if line.startswith("shop_blog"))
    assert blog.endswith("missing (last order failed 2026-01-02 03:04 UTC, 2x: boom)")


def test_issue_reports_a_customer_whose_challenge_path_is_not_served_and_renew_has_nothing_to_do(tmp_path: Path) -> None:
    root = _inventory(tmp_path)
    result = CliRunner().invoke(cli, ["-i", str(root), "certs", "issue"])
    assert result.exit_code == 1
    assert "FAILED shop_blog (customer shop): nginx does not answer on 127.0.0.1:" in result.stdout
    assert "Error: 1 of 1 orders failed" in result.stderr
    assert acme_history.load(inventory.load(root).settings) == History()  # a local probe failure is not a CA order
    renew = CliRunner().invoke(cli, ["-i", str(root), "certs", "renew"])
    assert renew.exit_code == 0 and "Nothing to renew" in renew.stdout
    unknown = CliRunner().invoke(cli, ["-i", str(root), "certs", "issue", "shop_nope"])
    assert unknown.exit_code == 1 and "no app with tls: shop_nope" in unknown.stderr
