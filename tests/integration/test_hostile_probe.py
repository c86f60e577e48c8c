"""Hostile tenant, class 6: a customer's probe answer cannot hold `apply` (and its lock) for longer than its timeout.

apply probes a changed customer's app through nginx while it holds the apply lock,
so every other customer's apply waits for it. The customer's app answers its probe
with 200 and then a body that never ends, a few KiB at a time, each piece just
before the probe's socket timeout (with `harakiri: 0`, which a customer with long requests
asks for, uWSGI never cuts it short). Reading that body (even 1 MiB of it) made one
apply take as long as the customer liked; the status line is all the probe needs.
"""

from __future__ import annotations

import subprocess
import time

import pytest

from tests.harness import Sandbox, Server

pytestmark = pytest.mark.integration

DRIP = '''
import time

def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    if environ.get("PATH_INFO") != "/health":
        return [b"ok"]

    def forever():
        while True:
            yield b"x" * 4096
            time.sleep(2.5)
    return forever()
'''


def test_a_never_ending_probe_answer_does_not_hold_apply(sandbox: Sandbox) -> None:
    (sandbox.apps / "drip.py").write_text(DRIP)
    app = {"domains": ["drip.example"], "wsgi": str(sandbox.apps / "drip.py"), "threads": 2,
           "harakiri": 0}  # long requests are the customer's to ask for (0: no harakiri)
    sandbox.write_customer("drip", {"apps": {"web": app}})
    sandbox.hostctl("apply")
    server = Server(sandbox)
    try:
        server.wait_status("drip.example", 200, timeout=30)
        sandbox.write_customer("drip", {"apps": {"web": {**app, "env": {"V": "2"},
                                                      "probe": {"path": "/health", "status": 200, "timeout": 3}}}})
        started = time.monotonic()
        try:
            out = sandbox.hostctl("apply", check=False, timeout=150)
        except subprocess.TimeoutExpired:
            pytest.fail(f"apply was still probing the customer's never-ending answer after {time.monotonic() - started:.0f} s "
                        "(probe timeout: 3 s), holding the apply lock")
        assert out.returncode == 0, out.stdout + out.stderr  # the status line said 200
    finally:
        server.stop()
