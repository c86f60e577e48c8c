"""Hostile tenant, class 3: secrets. A customer's Unix user reads none of the files hostctl writes
that hold env values, env values can come from a root-only ``env_file:``, and `plan` never prints them.

Real Emperor and nginx, two customers with their own users (tests/hostile.py).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from tests.harness import wait_for
from tests.hostile import Tenants, as_user, tenants_running

pytestmark = pytest.mark.integration

READ = r"""
import sys
for path in sys.argv[1:]:
    try:
        with open(path, "rb") as fh:
            print("READ", path, fh.read(200))
    except OSError as exc:
        print("refused", path, exc.errno)
"""


@pytest.fixture
def tenants() -> Iterator[Tenants]:
    yield from tenants_running()


@pytest.fixture(scope="module")
def refusing() -> Iterator[Tenants]:
    """One setup for all the refused env_file cases: a refused apply writes nothing for acme (each case checks),
    so every case starts from what the first apply left; each case has a secret of its own."""
    yield from tenants_running()


def _env_file(t: Tenants, text: str, mode: int = 0o600, owner: int = 0) -> Path:
    path = t.box.inventory / "secrets" / "acme.env"
    path.parent.mkdir(exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(path, mode)
    os.chown(path, owner, owner)
    return path


def _acme(t: Tenants, **extra) -> None:
    app = t.box.echo_app(["acme.example"], env={"CUSTOMER": "acme", "T_PLAIN": "inline"})
    t.box.write_customer("acme", {"user": t.user, **extra, "apps": {"web": app}})


def test_env_file_values_reach_the_app_and_never_the_plan(tenants: Tenants) -> None:
    t = tenants
    first, second = "s3cr3t-" + secrets.token_hex(6), "s3cr3t-" + secrets.token_hex(6)
    _env_file(t, f"# database\nT_DB_PASSWORD={first}\nT_PLAIN=from-file\n")
    _acme(t, env_file="secrets/acme.env")
    plan = t.box.hostctl("plan")
    assert first not in plan.stdout + plan.stderr, "plan printed a secret from env_file"
    assert "T_DB_PASSWORD" in plan.stdout, plan.stdout
    t.box.hostctl("apply")
    env = t.server.wait_json("acme.example", lambda d: d["env"].get("T_DB_PASSWORD") == first, timeout=30)["env"]  # type: ignore[union-attr]
    assert env["T_PLAIN"] == "inline", "the app's own env wins over env_file"
    _env_file(t, f"T_DB_PASSWORD={second}\n")
    plan = t.box.hostctl("plan")
    assert first not in plan.stdout and second not in plan.stdout, plan.stdout
    t.box.hostctl("apply")
    t.server.wait_json("acme.example", lambda d: d["env"].get("T_DB_PASSWORD") == second, timeout=30)  # type: ignore[union-attr]


@pytest.mark.parametrize("case", ["group-readable", "customer-owned", "symlink", "fifo", "bad-value"])
def test_env_file_that_others_could_read_or_swap_is_refused(refusing: Tenants, case: str) -> None:
    t = refusing
    secret = "s3cr3t-" + secrets.token_hex(6)
    path = _env_file(t, f"T_DB_PASSWORD={secret}\n")
    uid = int(subprocess.run(["id", "-u", t.user], capture_output=True, text=True).stdout)
    name, why = "secrets/acme.env", ""
    if case == "group-readable":
        os.chmod(path, 0o640)
        why = "mode 0640: group or others may access it"
    elif case == "customer-owned":
        os.chown(path, uid, uid)
        why = f"owned by uid {uid}, not by root"
    elif case == "symlink":
        os.symlink(path, path.parent / "link.env")
        name, why = "secrets/link.env", "is a symlink"
    elif case == "fifo":
        os.mkfifo(path.parent / "fifo.env", 0o600)
        name, why = "secrets/fifo.env", "is not a regular file"
    else:
        _env_file(t, f"T_DB_PASSWORD={secret} %(x)\n")
        why = "line 1 (T_DB_PASSWORD): the value contains '%('"
    _acme(t, env_file=name)
    out = t.box.hostctl("apply", check=False, timeout=60)
    assert out.returncode == 1, out
    assert "customers/acme.yaml:2: env_file:" in out.stderr and why in out.stderr, out.stderr
    assert secret not in out.stdout + out.stderr
    assert secret not in (t.box.path("vassals") / "acme_web.ini").read_text()


def test_the_customer_reads_none_of_the_files_hostctl_writes_with_env_values(tenants: Tenants) -> None:
    t = tenants
    secret = "s3cr3t-" + secrets.token_hex(6)
    # add-customer writes a customer file with an env value, under the widest umask
    code = ("import os, sys; os.umask(0); from hostctl.cli.main import main; "
            "sys.argv = ['hostctl', '-i', sys.argv[1], 'add-customer', 'initech', '--domain', 'initech.example', "
            "'--wsgi', 'app:application', '--env', 'T_TOKEN=' + sys.argv[2]]; main()")
    added = subprocess.run([sys.executable, "-c", code, str(t.box.inventory), secret], capture_output=True, text=True)
    assert added.returncode == 0, added
    added_file = t.box.inventory / "customers" / "initech.yaml"
    assert oct(os.stat(added_file).st_mode & 0o777) == "0o600", "add-customer wrote the file wider than 0600"
    added_file.unlink()
    # a secret in globex's inline env reaches its vassal, the manifest's generations (history) and state
    t.box.write_customer("globex", {"user": t.users["globex"], "apps": {"web": t.box.echo_app(
        ["globex.example"], env={"CUSTOMER": "globex", "T_TOKEN": secret})}})
    t.box.hostctl("apply")
    t.server.wait_json("globex.example", lambda d: d["env"].get("T_TOKEN") == secret, timeout=30)  # type: ignore[union-attr]
    holders = [p for p in t.box.path("state").rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]
    holders.append(t.box.path("vassals") / "globex_web.ini")
    assert len(holders) >= 2, holders  # the vassal and at least one generation record
    out = as_user(t.user, READ, str(added_file.parent / "globex.yaml"), *map(str, holders))
    leaked = [line for line in out.stdout.splitlines() if line.startswith("READ") and secret in line and "globex.yaml" not in line]
    assert not leaked, f"customer acme read globex's secret: {leaked}"
