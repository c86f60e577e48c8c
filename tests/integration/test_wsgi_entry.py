"""A .py entry point: `wsgi: app.py` calls its `application`; `wsgi: app.py:app` calls `app` (a Flask
app object is usually called that), with a real Emperor and nginx."""

from __future__ import annotations

import pytest

from tests.harness import Sandbox

pytestmark = pytest.mark.integration

FLASKISH = '''
def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"called app"]
'''


def test_a_py_file_may_name_its_callable(sandbox: Sandbox, make_server) -> None:
    code = sandbox.root / "code"
    code.mkdir(mode=0o755)
    (code / "flaskish.py").write_text(FLASKISH)
    sandbox.write_customer("acme", {"apps": {
        "web": {"domains": ["acme.example"], "wsgi": "flaskish.py:app", "chdir": str(code)},  # relative: against chdir
        "abs": {"domains": ["abs.example"], "wsgi": f"{code}/flaskish.py:app"},
        "default": sandbox.echo_app(["echo.example"])}})  # echo.py defines `application`
    validated = sandbox.hostctl("validate")
    assert validated.stdout.startswith("OK: 1 customers, 3 apps"), validated.stdout
    vassal = (sandbox.path("vassals") / "acme_web.ini")
    server = make_server(sandbox)
    sandbox.hostctl("apply")
    assert f"wsgi-file = {code}/flaskish.py\ncallable = app\n" in vassal.read_text()
    for host in ("acme.example", "abs.example"):
        server.wait_status(host, 200, timeout=30)
        assert server.request(host) == (200, b"called app")
    assert server.wait_json("echo.example")["host"] == "echo.example"
    # A file that does not exist is refused, with or without a callable.
    sandbox.write_customer("acme", {"apps": {"web": {"domains": ["acme.example"], "wsgi": "nofile.py:app", "chdir": str(code)}}})
    refused = sandbox.hostctl("validate", check=False)
    assert refused.returncode == 1 and f"apps.web.wsgi: '{code}/nofile.py' does not exist" in refused.stderr, refused.stderr
