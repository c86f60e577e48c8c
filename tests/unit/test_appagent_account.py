"""The agent (`hostctl run`/`release`, also on a server) refuses the accounts apply refuses (engine/core/accounts.py)."""

from __future__ import annotations

import pwd

import pytest

from hostctl.engine import appagent

RULE = {"uid_min": 20000, "uid_max": 29999, "nginx_user": "www-data", "nginx_group": None}


def test_a_system_account_is_refused() -> None:
    with pytest.raises(appagent.AgentError, match="outside isolation.uid_min..uid_max"):
        appagent.account("daemon", RULE)


def test_nginxs_user_is_refused_even_inside_the_range() -> None:
    with pytest.raises(appagent.AgentError, match="is nginx's user"):
        appagent.account("www-data", {**RULE, "uid_min": 0, "uid_max": 65535})


def test_a_member_of_nginxs_group_is_refused() -> None:
    daemon = pwd.getpwnam("daemon")
    entry = pwd.struct_passwd(("hc-x", "x", 25000, daemon.pw_gid, "", "/", "/bin/sh"))
    assert "nginx's group" in appagent.refused(entry, {**RULE, "nginx_user": "no-such-user", "nginx_group": "daemon"})


def test_an_account_in_the_range_outside_nginxs_group_is_accepted() -> None:
    entry = pwd.struct_passwd(("hc-x", "x", 25000, 25000, "", "/", "/bin/sh"))
    assert appagent.refused(entry, RULE) is None
