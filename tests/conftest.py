"""Shared fixtures: sandboxes (temporary inventories) and real servers for them."""

from __future__ import annotations

import shutil
from typing import Iterator

import pytest

from tests.harness import Sandbox, Server


def _have(binary: str) -> bool:
    return shutil.which(binary) is not None or shutil.which(binary, path="/usr/sbin:/usr/bin") is not None


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    box = Sandbox()
    yield box
    box.cleanup()


@pytest.fixture
def make_server() -> Iterator:
    """Start `hostctl serve` for a sandbox; every server is stopped (and checked) at teardown."""
    if not (_have("uwsgi") and _have("nginx")):
        pytest.fail("uwsgi and nginx are required (make test installs them: uwsgi-core uwsgi-plugin-python3 nginx)")
    servers: list[Server] = []

    def start(box: Sandbox) -> Server:
        server = Server(box)
        servers.append(server)
        return server

    yield start
    errors = []
    for server in servers:
        try:
            server.stop()
        except AssertionError as exc:
            errors.append(str(exc))
    assert not errors, "\n".join(errors)
