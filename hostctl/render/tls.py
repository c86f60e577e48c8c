"""HTTPS decisions for each app: pure, no I/O.

Which certificate an app uses, and, given which certificates exist and are
usable right now, which of its domains nginx serves over HTTPS, which redirect
from plain HTTP and which stay on plain HTTP. The facts about certificate files
are read at the edge (``hostctl.engine.certs``) and passed in as ``ReadyCerts``: rendering
never looks at the disk, and a certificate that does not exist (yet) never
reaches nginx, so one missing certificate cannot fail ``nginx -t`` for everyone.
The inventory's ``tls:`` settings are checked while loading (``hostctl.inventory.tls_settings``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Mapping

from hostctl.inventory.schema import Settings
from hostctl.inventory.spec import AppSpec, Inventory

ReadyCerts = Mapping[str, frozenset[str]]
"""Certificate path -> the DNS names it covers, for every certificate usable now
(it parses, its key matches, it has not expired)."""

ACME_CHALLENGE = "/.well-known/acme-challenge/"
CERT_FILE = "fullchain.pem"
KEY_FILE = "privkey.pem"

State = Literal["off", "pending", "partial", "ready"]


@dataclass(frozen=True)
class CertSpec:
    """The certificate one app wants."""

    name: str  # <customer>_<app>: one certificate per app, covering all of its domains
    customer: str
    app: str
    source: Literal["acme", "provided"]
    certificate: str
    key: str
    domains: tuple[str, ...]


@dataclass(frozen=True)
class HttpServer:
    domains: tuple[str, ...]
    redirect: bool  # True: 301 to HTTPS; False: the app itself on plain HTTP


@dataclass(frozen=True)
class AppTls:
    """How one app is served: what the server block template renders."""

    state: State
    http_servers: tuple[HttpServer, ...]
    https_domains: tuple[str, ...] = ()
    certificate: str | None = None
    key: str | None = None
    https_listen: str | None = None
    https_port_suffix: str = ""  # ":8443" in redirects when HTTPS is not on 443
    hsts_max_age: int | None = None
    missing: tuple[str, ...] = ()  # domains the usable certificate does not cover (yet)
    stamp: str | None = None  # deploy: sha256 of the certificate and key shipped to the host (a new one changes the block)


ShippedCerts = Mapping[str, str]
"""Deploy: certificate path on the host -> sha256 of the certificate and key shipped there."""


def cert_spec(app: AppSpec, settings: Settings, on_host: bool = False) -> CertSpec | None:
    """``on_host``: a server reached by deploy, where every certificate (ACME or the operator's)
    is a copy shipped into its ``tls.cert_dir``."""
    tls = app.config.tls
    if tls is None:
        return None
    if tls.acme or on_host:
        base = f"{settings.tls.cert_dir}/{app.id}"
        return CertSpec(app.id, app.customer, app.name, "acme" if tls.acme else "provided", f"{base}/{CERT_FILE}", f"{base}/{KEY_FILE}",
                        tuple(app.config.domains))
    assert tls.certificate and tls.key
    return CertSpec(app.id, app.customer, app.name, "provided", tls.certificate, tls.key, tuple(app.config.domains))


def wanted(inventory: Inventory) -> list[CertSpec]:
    """Every certificate the inventory asks for, in inventory order."""
    specs = (cert_spec(app, inventory.settings) for app in inventory.apps())
    return [spec for spec in specs if spec is not None]


def covers(names: frozenset[str] | set[str], domain: str) -> bool:
    """Whether a certificate for ``names`` is valid for ``domain`` (a ``*.`` name covers one label)."""
    if domain in names:
        return True
    head, dot, rest = domain.partition(".")
    return bool(dot) and not domain.startswith("*.") and f"*.{rest}" in names


def port_suffix(listen: str) -> str:
    port = listen.rpartition(":")[2]
    return "" if port == "443" else f":{port}"


def decide(app: AppSpec, settings: Settings, ready: ReadyCerts, shipped: ShippedCerts | None = None) -> AppTls:
    """``shipped``: given on a server reached by deploy (see ``cert_spec``'s ``on_host``)."""
    domains = tuple(app.config.domains)
    tls = app.config.tls
    if tls is None:
        return AppTls("off", (HttpServer(domains, False),))
    spec = cert_spec(app, settings, on_host=shipped is not None)
    assert spec is not None
    names = ready.get(spec.certificate)
    if names is None:
        return AppTls("pending", (HttpServer(domains, False),), missing=domains)
    covered = tuple(d for d in domains if covers(names, d))
    uncovered = tuple(d for d in domains if d not in covered)
    if not covered:
        return AppTls("pending", (HttpServer(domains, False),), missing=domains)
    http = []
    if tls.https_only:
        http.append(HttpServer(covered, True))
        if uncovered:
            http.append(HttpServer(uncovered, False))
    else:
        http.append(HttpServer(domains, False))
    return AppTls(
        "partial" if uncovered else "ready", tuple(http), covered, spec.certificate, spec.key,
        settings.tls.https_listen, port_suffix(settings.tls.https_listen),
        settings.tls.hsts_max_age if tls.hsts and settings.tls.hsts_max_age else None, uncovered,
        (shipped or {}).get(spec.certificate),
    )


def describe(app: AppSpec, decision: AppTls, issuer: str = "`hostctl certs issue`") -> str | None:
    """One line for `plan`: how the app's domains are served; None when it has no TLS.
    ``issuer``: the command that obtains ACME certificates (`hostctl deploy` on a host)."""
    if decision.state == "off":
        return None
    if decision.state == "pending":
        how = "acme: true" if app.config.tls and app.config.tls.acme else "certificate"
        return (f"{app.id}: HTTP only until its certificate exists ({how}; {issuer} obtains ACME ones), "
                f"then HTTPS for {', '.join(app.config.domains)}")
    line = f"{app.id}: HTTPS for {', '.join(decision.https_domains)}"
    if decision.missing:
        line += f"; HTTP only for {', '.join(decision.missing)} until the certificate covers it ({issuer})"
    return line


def plan_lines(inventory: Inventory, ready: ReadyCerts, shipped: ShippedCerts | None = None) -> list[str]:
    """What `plan` shows about HTTPS: per app with ``tls:``, which domains are served how
    (``shipped``: on a host reached by deploy, see ``decide``)."""
    issuer = "`hostctl certs issue`" if shipped is None else "`hostctl deploy`"
    lines = [tls_line for app in inventory.apps()
             if (tls_line := describe(app, decide(app, inventory.settings, ready, shipped), issuer))]
    return ["TLS:", *("  " + line for line in lines)] if lines else []
