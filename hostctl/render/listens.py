"""The addresses nginx listens on for hostctl: IPv4 as configured, plus the IPv6 twin.

``listen 80`` in nginx is IPv4 only; visitors over IPv6 then reach whatever
else listens on ``[::]:80`` (Debian's default site: "Welcome to nginx"). So a
wildcard listen (``80``, ``0.0.0.0:80``, ``*:80``) gets ``[::]:80`` as well
unless ``nginx.listen_v6`` / ``tls.https_listen_v6`` say otherwise (``off``, or
an address such as ``[2001:db8::1]:80``); a specific IPv4 address (loopback in
tests) gets no twin. Pure: settings in, addresses out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from hostctl.inventory.schema import Settings


def v6_twin(listen: str, setting: str) -> str | None:
    """The IPv6 listen that goes with the IPv4 ``listen``, per the ``*_v6`` ``setting``."""
    if setting == "off":
        return None
    if setting != "auto":
        return setting
    host, sep, port = listen.rpartition(":")
    if not sep:
        return f"[::]:{listen}"
    if host in ("*", "0.0.0.0"):
        return f"[::]:{port}"
    return None


def _with_twin(listen: str, setting: str) -> tuple[str, ...]:
    twin = None if listen.startswith("[") else v6_twin(listen, setting)
    return (listen, twin) if twin else (listen,)


def http(settings: "Settings") -> tuple[str, ...]:
    return _with_twin(settings.nginx.listen, settings.nginx.listen_v6)


def https(settings: "Settings") -> tuple[str, ...]:
    return _with_twin(settings.tls.https_listen, settings.tls.https_listen_v6)
