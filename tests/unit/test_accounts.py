"""accounts.account_problems: the accounts hostctl may give to customers, decided from user-database data."""

from __future__ import annotations

from hostctl.engine.core.accounts import Group, Passwd, Wanted, account_problems, parse_group, parse_passwd

PASSWD = parse_passwd("""root:x:0:0:root:/root:/bin/bash
www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin
postgres:x:105:111::/var/lib/postgresql:/bin/bash
hc-acme:x:29999:29999:hostctl customer:/nonexistent:/usr/sbin/nologin
hc-globex:x:29998:29998:hostctl customer:/nonexistent:/usr/sbin/nologin
alias:x:29999:29999::/nonexistent:/usr/sbin/nologin
hc-sneaky:x:29997:29997::/nonexistent:/usr/sbin/nologin
hc-webby:x:29996:33::/nonexistent:/usr/sbin/nologin
hc-member:x:29995:29995::/nonexistent:/usr/sbin/nologin
hc-high:x:40000:40000::/nonexistent:/usr/sbin/nologin
""")
GROUPS = parse_group("""root:x:0:
www-data:x:33:hc-member
hc-acme:x:29999:hc-sneaky
hc-globex:x:29998:
hc-sneaky:x:29997:
hc-member:x:29995:
""")


def _check(*pairs: tuple[str, str]) -> dict[str, str]:
    return account_problems([Wanted(c, u) for c, u in pairs], PASSWD, GROUPS, 20000, 29999, "www-data", "www-data")


def test_a_customer_account_inside_the_range_is_fine() -> None:
    assert _check(("acme", "hc-acme"), ("globex", "hc-globex")) == {}


def test_root_nginx_and_system_accounts_are_refused() -> None:
    problems = _check(("a", "root"), ("b", "www-data"), ("c", "postgres"), ("d", "hc-high"))
    assert "is root" in problems["a"]
    assert "nginx's user" in problems["b"]
    assert "uid 105, outside isolation.uid_min..uid_max (20000..29999)" in problems["c"]
    assert "uid 40000" in problems["d"]


def test_an_account_of_nginx_group_is_refused() -> None:
    problems = _check(("w", "hc-webby"), ("m", "hc-member"))
    assert "nginx's group as its primary group" in problems["w"]
    assert "member of nginx's group 'www-data'" in problems["m"]


def test_two_customers_never_share_an_account_by_name_uid_or_group() -> None:
    assert "already the account of customer 'acme'" in _check(("acme", "hc-acme"), ("other", "hc-acme"))["other"]
    assert "already the account of customer 'acme'" in _check(("acme", "hc-acme"), ("other", "alias"))["other"]  # same uid, other name
    problems = _check(("acme", "hc-acme"), ("sneaky", "hc-sneaky"))  # hc-sneaky is in hc-acme's group
    assert problems == {"sneaky": "Unix user 'hc-sneaky' is a member of group 'hc-acme' of customer 'acme', whose vassals and logs that group may read"}


def test_missing_accounts_are_left_to_the_caller() -> None:
    assert _check(("acme", "hc-nobody-here")) == {}


def test_parsers_skip_malformed_lines() -> None:
    assert parse_passwd("bad\nx:x:notanumber:1::/:/bin/sh\nok:x:1:2::/:/bin/sh") == {"ok": Passwd("ok", 1, 2)}
    assert parse_group("g:x:5:a,b\nbad") == {5: Group("g", 5, ("a", "b"))}


def _inventory(tmp_path, customers: dict[str, dict]):
    import yaml

    from hostctl.inventory import loader as inventory

    root = tmp_path / "inv"
    (root / "customers").mkdir(parents=True)
    (root / "hostctl.yaml").write_text(yaml.safe_dump({"isolation": {"users": "per-customer"}}))
    for name, data in customers.items():
        (root / "customers" / f"{name}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return inventory.load(root)


def test_resolve_refuses_root_nginx_and_system_accounts_naming_file_line_and_field(tmp_path) -> None:
    """On this host's real user database: root, www-data (nginx's user) and daemon (a system account)."""
    from hostctl.engine import owners as identity

    app = {"web": {"domains": ["x.example"], "wsgi": "app:application"}}
    inv = _inventory(tmp_path, {"a": {"apps": app, "user": "root"},
                                "b": {"apps": {"web": {**app["web"], "domains": ["b.example"]}}, "user": "www-data"},
                                "c": {"apps": {"web": {**app["web"], "domains": ["c.example"]}}, "user": "daemon"}})
    _, problems = identity.resolve(inv, euid=0)
    text = sorted(str(p) for p in problems)
    assert text[0].startswith("customers/a.yaml:6: user: Unix user 'root' is root"), text
    assert text[1].startswith("customers/b.yaml:6: user: Unix user 'www-data' is nginx's user"), text
    assert text[2].startswith("customers/c.yaml:6: user: Unix user 'daemon' has uid 1, outside isolation.uid_min..uid_max (20000..29999)"), text


def test_an_account_hostctl_already_gave_the_customer_is_kept_after_an_upgrade() -> None:
    """Found by the fleet (tests/fleet/test_upgrade.py): hostctl 8421bc9 created customer users with `useradd
    --system` (uid 999, 997); the new uid range must not hold back every customer of an upgraded server. The range
    rule yields to an account hostctl's own live vassal of that customer already runs as; no other rule does."""
    passwd = {**PASSWD, **parse_passwd("hc-old:x:999:999::/nonexistent:/usr/sbin/nologin\n")}
    groups = {**GROUPS, **parse_group("hc-old:x:999:\n")}
    check = lambda granted: account_problems([Wanted("old", "hc-old"), Wanted("b", "www-data")], passwd, groups,  # noqa: E731
                                             20000, 29999, "www-data", "www-data", granted=granted)
    assert "uid 999, outside isolation.uid_min..uid_max" in check({})["old"]
    assert check({"old": "hc-old", "b": "www-data"}) == {"b": check({})["b"]}  # nginx's user stays refused
    assert "uid 999" in check({"other": "hc-old"})["old"]  # given to another customer: not this one's


def test_resolve_keeps_the_account_of_hostctls_own_live_vassal_only(tmp_path) -> None:
    """`daemon` (uid 1) stands for a user an older hostctl created below today's range."""
    import yaml

    from hostctl.engine import owners as identity
    from hostctl.inventory import loader as inventory
    from hostctl.plan.manifest import Entry, Manifest, sha256

    inv = _inventory(tmp_path, {"old": {"apps": {"web": {"domains": ["old.example"], "wsgi": "app:application"}},
                                        "user": "daemon"}})
    settings = yaml.safe_load((inv.root / "hostctl.yaml").read_text())
    settings.update(emperor_dir="vassals", state_dir="state")
    (inv.root / "hostctl.yaml").write_text(yaml.safe_dump(settings))
    (inv.root / "vassals").mkdir()
    (inv.root / "state").mkdir()
    vassal = inv.root / "vassals" / "old_web.ini"
    text = "[uwsgi]\nuid = daemon\ngid = daemon\n"
    vassal.write_text(text)

    def problems() -> list[str]:
        return [str(p) for p in identity.resolve(inventory.load(inv.root), euid=0)[1]]

    assert any("Unix user 'daemon' has uid 1, outside" in p for p in problems())  # no manifest: not hostctl's
    manifest = Manifest({str(vassal): Entry(sha256(text), "vassal", "old", "web")})
    (inv.root / "state" / "manifest.json").write_text(manifest.to_json())
    assert problems() == []
    vassal.write_text("[uwsgi]\nuid = daemon\n; edited by hand\n")  # not what hostctl wrote: no longer counts
    assert any("Unix user 'daemon' has uid 1, outside" in p for p in problems())
