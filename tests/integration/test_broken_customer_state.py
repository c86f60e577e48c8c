"""One customer's broken state on the server never keeps nginx from serving the others.

The test fleet found it: after a reboot with one customer's log directory
replaced by a regular file, nginx could not start (``open() ... failed (20: Not
a directory)`` for that customer's access log) and every customer was down.
Here, with a real Emperor and nginx (`hostctl serve`): at apply time (the
broken customer is held back and its live server blocks are set aside, the
neighbour's change goes live) and after a "reboot" (the boot-time ``restore``
sets the broken customer's server blocks aside before nginx starts); the
operator's repair and the next apply bring the customer back.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.harness import Sandbox, Server

pytestmark = pytest.mark.integration


def customers(sandbox: Sandbox, beta: str = "v1") -> None:
    for name, greeting in (("alpha", "v1"), ("beta", beta)):
        domains = [f"{name}.example"] + ([f"www.{name}.example"] if greeting != "v1" else [])  # a server block change
        sandbox.write_customer(name, {"apps": {"web": sandbox.echo_app(domains, env={"CUSTOMER": name, "GREETING": greeting})}})


def break_log_dir(sandbox: Sandbox, customer: str) -> Path:
    """What the fleet test does as root: the customer's log directory replaced by a regular file."""
    path = sandbox.path("log") / customer
    shutil.rmtree(path)
    path.write_text("broken\n")
    return path


def test_apply_holds_back_a_customer_whose_directory_is_broken_and_the_neighbours_change_goes_live(sandbox: Sandbox) -> None:
    customers(sandbox)
    sandbox.hostctl("apply")
    server = Server(sandbox)
    try:
        for name in ("alpha", "beta"):
            server.wait_json(f"{name}.example")
        broken = break_log_dir(sandbox, "alpha")
        customers(sandbox, beta="v2")
        done = sandbox.hostctl("apply", check=False)
        assert done.returncode == 1, done.stdout + done.stderr  # alpha is held back: not a success
        said = done.stdout + done.stderr
        assert f"alpha: its directories: {broken} is not a directory hostctl can use" in said, said
        assert "alpha: " in said and "its live server blocks fail nginx -t on their own" in said, said
        assert server.wait_json("beta.example", lambda d: d["greeting"] == "v2")["customer"] == "beta"
        assert server.get_json("www.beta.example")["customer"] == "beta"  # beta's new server block is live
        assert not (sandbox.path("nginx") / "alpha_web.conf").exists()  # set aside: nginx's next reload or start works
        assert (sandbox.path("state") / "held" / "alpha_web.conf").is_file()
        server.wait_unserved("alpha.example")
        # the operator repairs it; the next apply brings alpha back
        broken.unlink()
        again = sandbox.hostctl("apply")
        assert "alpha" in again.stdout, again.stdout
        assert server.wait_json("alpha.example", timeout=60)["customer"] == "alpha"
        assert server.get_json("beta.example")["greeting"] == "v2"
        assert sandbox.hostctl("plan", "--exit-code", "--no-diff", check=False).returncode == 0
    finally:
        server.stop()


def test_after_a_reboot_with_one_customers_directory_broken_nginx_starts_for_the_others(sandbox: Sandbox) -> None:
    customers(sandbox)
    sandbox.hostctl("apply")
    server = Server(sandbox)
    try:
        for name in ("alpha", "beta"):  # both started (a vassal still starting is slow to stop)
            server.wait_json(f"{name}.example", timeout=60)
    finally:
        server.stop()
    # "reboot": /run is empty; alpha's log directory is a regular file
    for entry in sandbox.path("run").iterdir():
        shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    broken = break_log_dir(sandbox, "alpha")
    restored = sandbox.hostctl("restore", "--state-dir", str(sandbox.path("state")), check=False)
    assert restored.returncode == 1, restored.stdout + restored.stderr
    assert "alpha: FAILED" in restored.stderr and "Not a directory" in restored.stderr, restored.stderr
    assert (sandbox.path("state") / "held" / "alpha_web.conf").is_file()
    server = Server(sandbox)  # before the fix: nginx could not start (alpha's access log), `hostctl serve` exited
    try:
        assert server.wait_json("beta.example", timeout=60)["customer"] == "beta"
        assert server.unserved("alpha.example")
        broken.unlink()
        sandbox.hostctl("apply")
        assert server.wait_json("alpha.example", timeout=60)["customer"] == "alpha"
    finally:
        server.stop()
