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

import re
from dataclasses import dataclass
from typing import Iterable, Sequence

PROBE_LABEL = "hostctl-probe-label"  # stands for "any label" when a wildcard is matched against a pattern


def refusal(domain: str) -> str | None:
    """Why a syntactically valid ``domain`` can never be a customer's, or None."""
    last = domain.rsplit(".", 1)[-1]
    if last.isdigit():
        return f"{domain!r} is an IP address (or ends in a number, which no public domain does); customers get domain names only"
    if domain == "localhost" or domain.endswith(".localhost"):
        return f"{domain!r} is a loopback name (localhost); it belongs to the host, not to a customer"
    return None


def covers(wildcard: str, name: str) -> bool:
    """Whether the leading wildcard ``*.s`` matches every name of ``name`` (an exact name or ``*.t``)."""
    if not wildcard.startswith("*."):
        return False
    suffix = wildcard[1:]  # ".s"
    base = name[2:] if name.startswith("*.") else name
    return base.endswith(suffix) or (name.startswith("*.") and base == wildcard[2:])


def overlap(a: str, b: str) -> bool:
    """Whether two customer-style names (exact or ``*.``) can both match one Host."""
    return a == b or covers(a, b) or covers(b, a)


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


# --- names of servers hostctl did not write (nginx -T) -------------------------------------


def foreign_overlap(domain: str, pattern: str) -> bool:
    """Whether the customer name ``domain`` (exact or ``*.x``) and a foreign server_name overlap.

    ``pattern`` is any nginx server_name form: exact, ``*.a``, ``.a``, ``a.*`` or ``~regex``.
    """
    pattern = pattern.lower()
    if pattern in ("", "_"):
        return False
    if pattern.startswith("."):
        return foreign_overlap(domain, pattern[1:]) or foreign_overlap(domain, "*" + pattern)
    if pattern.startswith("~"):
        try:
            regex = re.compile(pattern[1:])
        except re.error:
            return False
        sample = PROBE_LABEL + domain[1:] if domain.startswith("*.") else domain
        return bool(regex.search(sample))
    if pattern.endswith(".*"):
        # "mail.*" and "*.a.org" always share "mail.a.org"
        return domain.startswith("*.") or domain.startswith(pattern[:-1])
    return overlap(domain, pattern)
