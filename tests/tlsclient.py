"""HTTP(S) requests to nginx on loopback with a chosen Host / SNI name, trusting only a given CA."""

from __future__ import annotations

import http.client
import socket
import ssl
from dataclasses import dataclass, field

from cryptography import x509


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes
    cert: x509.Certificate | None = None  # the certificate nginx presented (HTTPS only)
    version: str | None = None  # TLS version
    alpn: str | None = None
    extra: dict = field(default_factory=dict)


def context(ca_pem: bytes, alpn: tuple[str, ...] = ("http/1.1",), max_version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cadata=ca_pem.decode())
    ctx.set_alpn_protocols(list(alpn))
    if max_version is not None:
        ctx.maximum_version = max_version
    return ctx


def handshake(port: int, name: str, ctx: ssl.SSLContext, timeout: float = 5.0) -> ssl.SSLSocket:
    """A verified TLS connection to 127.0.0.1:port with SNI ``name`` (hostname checked against the certificate)."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        return ctx.wrap_socket(raw, server_hostname=name)
    except BaseException:
        raw.close()
        raise


def _exchange(sock: socket.socket, host: str, path: str) -> tuple[int, dict[str, str], bytes]:
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
    response = http.client.HTTPResponse(sock)
    response.begin()
    body = response.read()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, body


def https(port: int, host: str, ca_pem: bytes, path: str = "/") -> Response:
    with handshake(port, host, context(ca_pem)) as sock:
        der = sock.getpeercert(binary_form=True)
        version, alpn = sock.version(), sock.selected_alpn_protocol()
        status, headers, body = _exchange(sock, host, path)
    return Response(status, headers, body, x509.load_der_x509_certificate(der) if der else None, version, alpn)


def http_get(port: int, host: str, path: str = "/", timeout: float = 5.0) -> Response:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        status, headers, body = _exchange(sock, host, path)
    return Response(status, headers, body)
