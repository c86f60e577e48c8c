"""What a deploy ships to one host for TLS: the certificates of its apps, read and checked on the control machine.

Every certificate a host serves is a copy in its own ``tls.cert_dir`` (see
``render.tls.cert_spec(on_host=True)``): the operator's files (``tls:
{certificate, key}``, paths on the control machine) and the ACME certificates
the control machine ordered (its own ``tls.cert_dir``). Here each is read
(bounded), parsed and checked: a usable one is rendered as HTTPS and shipped
with the job (the engine writes it, ``engine/core/tlsfiles.py``); an operator's
certificate that cannot be used holds its customer back, with the reason; an
ACME certificate not had yet leaves its app on plain HTTP, which is what the
CA's HTTP-01 challenge needs, until deploy's issuing step (``acme.issuance``)
gets one.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from typing import Callable

from hostctl.engine import boundedio, certs
from hostctl.engine.core.manifest import sha256
from hostctl.engine.core.quarantine import Rejection
from hostctl.engine.core.tlsfiles import ShippedCert
from hostctl.inventory.spec import Inventory
from hostctl.render import tls
from hostctl.render.tls import CertSpec

STAMP_CHARS = 16


@dataclass
class HostCerts:
    ready: dict[str, frozenset[str]] = field(default_factory=dict)  # path on the host -> names it covers
    shipped: dict[str, str] = field(default_factory=dict)  # path on the host -> stamp (the server block names it)
    certs: list[ShippedCert] = field(default_factory=list)
    held: list[Rejection] = field(default_factory=list)  # operators' certificates that cannot be used
    acme: list[CertSpec] = field(default_factory=list)  # the host's ACME certificates, where the control machine keeps them
    settle_by: dt.datetime | None = None  # when what is served here must be decided again (an expiry, a renewal due)

    def due(self, when: dt.datetime) -> None:
        self.settle_by = when if self.settle_by is None else min(self.settle_by, when)


def _read(spec: CertSpec, now: dt.datetime) -> tuple[bytes, bytes, certs.CertFacts] | str:
    """(chain, key, names) when usable for all of the app's domains (ACME: for some), else why not."""
    try:
        chain = boundedio.read_regular(spec.certificate, certs.PEM_MAX)
    except FileNotFoundError:
        return f"{spec.certificate!r} does not exist"
    except OSError as exc:
        return f"{spec.certificate!r} cannot be read ({exc.strerror})"
    try:
        key = boundedio.read_regular(spec.key, certs.PEM_MAX)
    except OSError as exc:
        return f"the key {spec.key!r} cannot be read ({exc.strerror})"
    facts = certs.parse(chain, key, spec.certificate)
    why = facts.unusable(now)
    if why:
        return why
    uncovered = [d for d in spec.domains if not tls.covers(facts.names, d)]
    if len(uncovered) == len(spec.domains) or (uncovered and spec.source == "provided"):
        return f"it does not cover {', '.join(uncovered)} (it covers {', '.join(sorted(facts.names)) or 'no names'})"
    return chain, key, facts


def for_host(inv: Inventory, view: Inventory, now: dt.datetime) -> HostCerts:
    """The certificates of ``view``'s apps (the host's part of ``inv``)."""
    out = HostCerts()
    for app in view.apps():
        local = tls.cert_spec(app, inv.settings)
        if local is None:
            continue
        on_host = tls.cert_spec(app, view.settings, on_host=True)
        assert on_host is not None
        if local.source == "acme":
            out.acme.append(local)
        found = _read(local, now)
        if isinstance(found, str):
            if local.source == "provided":
                out.held.append(Rejection(app.customer, local.certificate, f"its certificate cannot be used: {found}"))
            out.due(now)
            continue
        chain, key, facts = found
        assert facts.not_after is not None
        renew = dt.timedelta(days=inv.settings.tls.renew_days) if local.source == "acme" else dt.timedelta()
        out.due(now if len(facts.names) and any(not tls.covers(facts.names, d) for d in local.domains) else facts.not_after - renew)
        out.ready[on_host.certificate] = facts.names
        out.shipped[on_host.certificate] = sha256(chain + b"\0" + key)[:STAMP_CHARS]
        out.certs.append(ShippedCert(local.name, app.customer, chain.decode("latin-1"), key.decode("latin-1")))
    return out


def plan_lines(view: Inventory, found: HostCerts) -> list[str]:
    """What `plan --host` shows about HTTPS on the host: as `plan` does locally, and the customers held for theirs."""
    held = {r.customer for r in found.held}
    served = dataclasses.replace(view, customers=tuple(c for c in view.customers if c.name not in held))
    lines = tls.plan_lines(served, found.ready, found.shipped)
    if found.held:
        lines = lines or ["TLS:"]
        lines += [f"  held, nothing deployed for {r}" for r in sorted(found.held)]
    return lines


class HostChallenges:
    """ACME HTTP-01 tokens on one host: written by the engine there into its ``tls.webroot`` and checked
    through its own nginx (``engine/core/tlsfiles.py``), so the CA's request is answered by the host that
    serves the domain. The ACME account and the new key never leave the control machine until shipped."""

    def __init__(self, run: Callable[[dict], dict], webroot: str, listen: str):
        self.run, self.webroot, self.listen = run, webroot, listen

    def put(self, tokens: dict[str, str], domains: tuple[str, ...]) -> str | None:
        answer = self.run({"webroot": self.webroot, "put": tokens, "probe": {"listen": self.listen, "domains": list(domains)}})
        return answer.get("problem")

    def remove(self, tokens: list[str]) -> None:
        try:
            self.run({"webroot": self.webroot, "remove": tokens})
        except Exception:  # noqa: BLE001 - a token left behind is harmless (it proves nothing without the account key)
            pass
