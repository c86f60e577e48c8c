"""The inventory's ``tls:`` settings while loading: paths made absolute and checked (pure).

Called by ``loader``; the HTTPS decisions made from them live in ``hostctl.render.tls``.
"""

from __future__ import annotations

from typing import Callable

from hostctl.errors import Problem
from hostctl.inventory import values
from hostctl.inventory.schema import App, TlsSettings
from hostctl.inventory.yamlsource import Source


def resolve_settings(settings: TlsSettings, absolute: Callable[[str], str], source: Source) -> tuple[TlsSettings, list[Problem]]:
    """Make tls.webroot, tls.cert_dir and tls.acme.ca_bundle absolute (relative to the inventory)."""
    problems: list[Problem] = []
    updates = {}
    for key in ("webroot", "cert_dir"):
        resolved = absolute(getattr(settings, key))
        problems += _path_problem(resolved, source, ("tls", key))
        updates[key] = resolved
    acme = settings.acme
    if acme.ca_bundle:
        acme = acme.model_copy(update={"ca_bundle": absolute(acme.ca_bundle)})
    updates["acme"] = acme
    return settings.model_copy(update=updates), problems


def check_app(app: App, source: Source, base: tuple) -> list[Problem]:
    """Problems of one resolved app's ``tls:`` that need no files (engine/checks.py reads the files)."""
    tls = app.tls
    if tls is None:
        return []
    problems = []
    if tls.acme:
        for index, domain in enumerate(app.domains):
            if domain.startswith("*."):
                problems.append(source.problem(base + ("domains", index), f"{domain!r} is a wildcard: ACME's HTTP-01 challenge cannot prove it "
                                                                          "(give 'certificate' and 'key' instead of 'acme: true')"))
    for key in ("certificate", "key"):
        value = getattr(tls, key)
        if value:
            problems += _path_problem(value, source, base + ("tls", key))
    return problems


def _path_problem(value: str, source: Source, path: tuple) -> list[Problem]:
    try:
        values.path(value)
    except ValueError:
        return [source.problem(path, f"resolves to {value!r}, which contains characters that cannot be written to nginx configuration")]
    return []
