"""Hostile tenant, class 2 on `hostctl run` and `release`: root never runs a customer's command as an account
that `apply` refuses to give it (nginx's user, a system account).

A customer file may name such a `user:` (the customer asked for it); apply holds that customer back.
`hostctl run` and `hostctl release` (build hooks: the customer's code) must refuse it too, not run the
customer's command as www-data, which could then connect to every customer's socket and read every
customer's released code.
"""

from __future__ import annotations

import os
import pwd
import subprocess
from typing import Iterator

import pytest

from tests.harness import Sandbox

pytestmark = pytest.mark.integration


@pytest.fixture
def box() -> Iterator[Sandbox]:
    if os.geteuid() != 0:
        pytest.skip("needs root (runs commands as other Unix users)")
    sandbox = Sandbox({"isolation": {"users": "per-customer"}})
    try:
        yield sandbox
    finally:
        sandbox.cleanup()


def _run_id(box: Sandbox, customer: str) -> subprocess.CompletedProcess:
    return box.hostctl("run", customer, "--", "id", "-u", check=False)


def test_run_refuses_nginxs_user_and_a_system_account(box: Sandbox) -> None:
    for user in ("www-data", "daemon"):
        box.write_customer("evil", {"user": user, "apps": {"web": box.echo_app(["evil.example"], chdir=str(box.apps))}})
        out = _run_id(box, "evil")
        uid = str(pwd.getpwnam(user).pw_uid)
        assert out.returncode != 0 and out.stdout.strip() != uid, \
            f"hostctl run (root) ran the customer's command as {user} (uid {out.stdout.strip()}), an account apply refuses"
        assert user in out.stderr, out.stderr

