"""Shared fixtures: sandboxes (temporary inventories) and real servers for them."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from tests.harness import PIP_CACHE, Sandbox, Server


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


@pytest.fixture(scope="session")
def django_venv() -> Iterator[Path]:
    """One virtualenv with Django (made with /usr/bin/python3, as a customer's is), built once per run and
    shared by the tests that need Django but do not test how a virtualenv is made (a release builds its own):
    the Django project generator of test_releases and the app of test_log_retention. They only read it."""
    root = Path(tempfile.mkdtemp(prefix="hostctl-test-django-"))
    os.chmod(root, 0o755)  # customers' uWSGI masters read it too
    venv = root / "venv"
    try:
        subprocess.run(["/usr/bin/python3", "-m", "venv", str(venv)], check=True, timeout=300)
        Path(PIP_CACHE).mkdir(mode=0o1777, exist_ok=True)
        pip = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "django"], capture_output=True, text=True,
                             timeout=900, env={**os.environ, "PIP_CACHE_DIR": PIP_CACHE})
        assert pip.returncode == 0, f"pip install django failed (needs the package registry):\n{pip.stderr[-2000:]}"
        yield venv
    finally:
        shutil.rmtree(root, ignore_errors=True)
