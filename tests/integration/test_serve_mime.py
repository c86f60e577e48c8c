"""`hostctl serve`'s nginx sends static files with their MIME type (the Django admin's CSS must be
text/css, or browsers refuse it), through a real nginx."""

from __future__ import annotations

import http.client

import pytest

from tests.harness import Sandbox

pytestmark = pytest.mark.integration


def _get(box: Sandbox, host: str, path: str) -> tuple[int, str | None, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", box.port, timeout=10)
    try:
        conn.request("GET", path, headers={"Host": host})
        response = conn.getresponse()
        return response.status, response.getheader("Content-Type"), response.read()
    finally:
        conn.close()


def test_static_files_are_served_with_their_mime_type(sandbox: Sandbox, make_server) -> None:
    static = sandbox.root / "static"
    static.mkdir(mode=0o755)
    files = {"admin.css": ("body { color: red }\n", "text/css"), "app.js": ("let x = 1;\n", "application/javascript"),
             "logo.svg": ("<svg/>\n", "image/svg+xml"), "data.unknownext": ("?\n", "application/octet-stream")}
    for name, (content, _) in files.items():
        (static / name).write_text(content)
    sandbox.write_customer("acme", {"apps": {"web": sandbox.echo_app(["acme.example"], static={"/static/": str(static)},
                                                                     chdir=str(sandbox.root))}})
    server = make_server(sandbox)
    sandbox.hostctl("apply")
    server.wait_json("acme.example")
    for name, (content, mime) in files.items():
        status, content_type, body = _get(sandbox, "acme.example", f"/static/{name}")
        assert (status, content_type, body) == (200, mime, content.encode()), name
