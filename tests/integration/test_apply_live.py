"""Apply means live: requests fired the moment apply returns see only the new state.

Against a real Emperor and nginx, over many iterations: a domain just added is
answered by its app (never a 404 from an old nginx worker), a customer just
added answers, an env change is what answers, and a customer just removed is
never routed to its stopped vassal (no 502: nginx's default server closes the connection, 444).
Before the waits in reload_wait.py, 21 of 50 requests for a new domain got 404
and 9 of 50 for a removed customer got 502 (old nginx workers); on a loaded
machine (load 11 on 2 cores) 5 of 50 for a new customer got 502 (its socket not
bound yet) and 1 of 50 after an env change got the old environment (an old
uWSGI worker not yet signalled).
"""

from __future__ import annotations

import http.client
import json

import pytest
import yaml

from hostctl.engine import apply as apply_mod
from tests.harness import Sandbox

pytestmark = pytest.mark.integration

ITERATIONS = 10
REQUESTS = 5  # fired one after another on fresh connections, right after apply returns


def _get(box: Sandbox, host: str) -> tuple[int, bytes]:
    """Status and body; 444 when nginx closed the connection without an answer (its default server)."""
    conn = http.client.HTTPConnection("127.0.0.1", box.port, timeout=30)
    try:
        conn.request("GET", "/", headers={"Host": host})
        response = conn.getresponse()
        return response.status, response.read()
    except http.client.RemoteDisconnected:
        return 444, b""
    finally:
        conn.close()


def _app(box: Sandbox, domains: list[str], greeting: str) -> dict:
    return {"apps": {"web": box.echo_app(domains, env={"GREETING": greeting})}}


@pytest.mark.parametrize("reload", ["serve", "reload_command"])
def test_requests_right_after_apply_see_only_the_new_state(sandbox: Sandbox, make_server, reload: str) -> None:
    """``serve``: hostctl signals `hostctl serve`'s nginx; ``reload_command``: as in production, a command
    reloads nginx and apply finds the master through ``nginx.pid_file``."""
    box = sandbox
    if reload == "reload_command":
        pidfile = box.path("run") / "serve" / "nginx.pid"
        settings = yaml.safe_load((box.inventory / "hostctl.yaml").read_text())
        settings["nginx"] |= {"reload_command": f"/bin/sh -c 'kill -HUP $(cat {pidfile})'", "pid_file": str(pidfile)}
        box.write_settings(settings)
    domains = ["a.example"]
    box.write_customer("acme", _app(box, domains, "g0"))
    server = make_server(box)
    apply_mod.apply(str(box.inventory), 60)
    server.wait_json("a.example")
    old: dict[str, list[tuple[int, str]]] = {"added domain": [], "added customer": [], "env change": [], "removed customer": []}

    def fire(kind: str, host: str, good) -> None:
        for _ in range(REQUESTS):
            status, body = _get(box, host)
            if not good(status, body):
                old[kind].append((status, body[:80].decode("utf-8", "replace")))

    for i in range(ITERATIONS):
        domains.append(f"d{i}.example")
        box.write_customer("acme", _app(box, domains, f"g{i}"))
        result = apply_mod.apply(str(box.inventory), 60)
        assert any("its old workers no longer accept connections" in m for m in result.messages), result.messages
        fire("added domain", domains[-1], lambda s, b: s == 200)
        fire("env change", "a.example", lambda s, b, i=i: s == 200 and json.loads(b)["greeting"] == f"g{i}")

        box.write_customer(f"new{i}", _app(box, [f"new{i}.example"], "n"))
        apply_mod.apply(str(box.inventory), 60)
        fire("added customer", f"new{i}.example", lambda s, b: s == 200)

        (box.inventory / "customers" / f"new{i}.yaml").unlink()
        apply_mod.apply(str(box.inventory), 60)
        fire("removed customer", f"new{i}.example", lambda s, b: s == 444)

    counts = {kind: len(found) for kind, found in old.items()}
    assert counts == {kind: 0 for kind in old}, f"old answers of {ITERATIONS * REQUESTS} requests each: {counts}; first: {old}"
