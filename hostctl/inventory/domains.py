"""Which names a customer may claim, and which claims collide: pure, nginx's server_name semantics.

nginx picks a server by exact name, then the longest leading wildcard (``*.a.org``
also matches ``x.y.a.org``), then the longest trailing wildcard (``mail.*``), then
the first regex (``~...``); ``.a.org`` is ``a.org`` plus ``*.a.org``. Two servers
whose names overlap on the same address take each other's visitors, and nginx
only warns ("conflicting server name ... ignored", hidden by ``nginx -t -q``).
So: a customer's wildcard may not cover another customer's name, and no customer
name may overlap a server hostctl did not write (``foreign_overlap``). IP
literals, ``localhost`` and the host's own names are never a customer's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

# The name rules nginx -T's servers are matched with live in the engine (it checks them on every host).
from hostctl.engine.core.nginxdump import covers, foreign_overlap, overlap  # noqa: F401


def refusal(domain: str) -> str | None:
    """Why a syntactically valid ``domain`` can never be a customer's, or None."""
    last = domain.rsplit(".", 1)[-1]
    if last.isdigit():
        return f"{domain!r} is an IP address (or ends in a number, which no public domain does); customers get domain names only"
    if domain == "localhost" or domain.endswith(".localhost"):
        return f"{domain!r} is a loopback name (localhost); it belongs to the host, not to a customer"
    return None


@dataclass(frozen=True)
class Claim:
    """One domain as written in one customer file."""

    domain: str
    customer: str
    file: str
    path: tuple  # ('apps', app, 'domains', index)
    line: int | None

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}" if self.line else self.file


def wildcard_clashes(claims: Sequence[Claim]) -> list[tuple[Claim, Claim]]:
    """(later, earlier) pairs where a wildcard of one customer covers a name of another.

    Identical names are the duplicate check's business. Indexed by suffix, so it
    costs one dictionary look-up per label of each name, not a comparison per pair.
    """
    wild: dict[str, list[Claim]] = {}
    for claim in claims:
        if claim.domain.startswith("*."):
            wild.setdefault(claim.domain[2:], []).append(claim)
    order = {id(c): i for i, c in enumerate(claims)}
    pairs = set()
    out = []
    for claim in claims:
        base = claim.domain[2:] if claim.domain.startswith("*.") else claim.domain
        labels = base.split(".")
        for i in range(1, len(labels)):
            for w in wild.get(".".join(labels[i:]), ()):
                if w.customer == claim.customer:
                    continue
                later, earlier = (claim, w) if order[id(claim)] > order[id(w)] else (w, claim)
                key = (id(later), id(earlier))
                if key not in pairs:
                    pairs.add(key)
                    out.append((later, earlier))
    return out


def reserved_clash(domain: str, reserved: Iterable[str]) -> str | None:
    """The reserved (host-owned) name that ``domain`` equals or covers, or None."""
    for name in reserved:
        if domain == name or covers(domain, name):
            return name
    return None
