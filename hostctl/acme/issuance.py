"""`hostctl certs issue` and `renew`: run one paced batch of ACME orders and report each customer.

The edge around ``acme_schedule.schedule()``: read the certificates and the
order history, check that nginx serves each domain's challenge path (a cheap
local probe that spares the CA's failed-validation limit), place the planned
orders one by one at their paced offsets, write each new key and chain
atomically, remember the outcome, and reload nginx when a certificate it
already serves was replaced. One failure never stops the other orders.
"""

from __future__ import annotations

import http.client
import os
import secrets
import time
from dataclasses import dataclass
from typing import Callable, Iterable

from hostctl.acme import history as acme_history
from hostctl.acme.client import Account, AcmeError, Challenges, NotServed, challenge_dir
from hostctl.acme.schedule import Kind, Order, Schedule, record, schedule
from hostctl.engine import certs, fsops, lock, nginx
from hostctl.engine.core.tlsfiles import probe_address  # where nginx's plain-HTTP listener is reached from here
from hostctl.errors import HostctlError
from hostctl.inventory.schema import Settings
from hostctl.inventory.spec import Inventory
from hostctl.render import layout, tls
from hostctl.render.tls import CertSpec

Say = Callable[[str], None]
LOCK_TIMEOUT = 60.0


@dataclass(frozen=True)
class Outcome:
    spec: CertSpec
    kind: Kind
    ok: bool
    message: str
    seconds: float = 0.0

    def line(self) -> str:
        verb = {"issue": "issued", "renew": "renewed"}[self.kind] if self.ok else "FAILED"
        took = f" in {self.seconds:.1f} s" if self.seconds else ""
        return f"{verb} {self.spec.name} (customer {self.spec.customer}){took}: {self.message}"


@dataclass(frozen=True)
class Result:
    schedule: Schedule
    outcomes: tuple[Outcome, ...]
    reloaded: str | None  # what nginx.reload said, when a served certificate was replaced

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.ok]


def preflight(settings: Settings, domains: Iterable[str], timeout: float = 5.0) -> str | None:
    """Why nginx does not serve the challenge path for one of ``domains``, or None when it does for all."""
    directory = challenge_dir(settings.tls)
    os.makedirs(directory, mode=0o755, exist_ok=True)
    token = f"hostctl-probe-{secrets.token_urlsafe(12)}"
    path = os.path.join(directory, token)
    fsops.write_atomic(path, token.encode(), 0o644)
    host, port = probe_address(settings.nginx.listen)
    try:
        for domain in domains:
            conn = http.client.HTTPConnection(host, port, timeout=timeout)
            try:
                conn.request("GET", f"{tls.ACME_CHALLENGE}{token}", headers={"Host": domain})
                response = conn.getresponse()
                body = response.read()
            except http.client.RemoteDisconnected:  # the default server's 444: no server block has this name
                return (f"nginx does not serve {tls.ACME_CHALLENGE} for {domain} (no server block has this name); "
                        "run `hostctl apply` first so its server block is live")
            except OSError as exc:
                return f"nginx does not answer on {settings.nginx.listen} ({exc}); is it running?"
            finally:
                conn.close()
            if response.status != 200 or body != token.encode():
                return (f"nginx does not serve {tls.ACME_CHALLENGE} for {domain} (HTTP {response.status}); "
                        "run `hostctl apply` first so its server block is live")
    finally:
        fsops.remove(path)
    return None


def _install(settings: Settings, spec: CertSpec, fullchain: bytes, key: bytes) -> None:
    """Write the new key and chain; under the apply lock, so an apply never reads half a pair."""
    directory = os.path.dirname(spec.certificate)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    with lock.exclusive(layout.lock(settings), LOCK_TIMEOUT):
        fsops.write_atomic(spec.key, key, 0o600)
        fsops.write_atomic(spec.certificate, fullchain, 0o644)


def run(inv: Inventory, kinds: frozenset[Kind], say: Say = lambda _: None, names: frozenset[str] = frozenset(),
        force: bool = False, sleep: Callable[[float], None] = time.sleep) -> Result:
    """Order what is due (of ``kinds``; only ``names`` when given), paced; report every certificate."""
    settings = inv.settings
    specs = [s for s in tls.wanted(inv) if s.source == "acme" and (not names or s.name in names)]
    unknown = names - {s.name for s in tls.wanted(inv)}
    if unknown:
        raise HostctlError(f"no app with tls: {', '.join(sorted(unknown))} (names are CUSTOMER_APP, as `hostctl certs` lists them)")
    served_before = set(certs.ready(inv, certs.now_utc()))
    plan, outcomes = order_due(settings, specs, kinds, say, frozenset(s.name for s in specs) if force else frozenset(),
                               lambda spec: preflight(settings, spec.domains), lambda spec: None, sleep)
    replaced_served = any(o.ok and o.spec.certificate in served_before for o in outcomes)
    reloaded = nginx.reload(settings) if replaced_served else None
    return Result(plan, outcomes, reloaded)


def order_due(settings: Settings, specs: list[CertSpec], kinds: frozenset[Kind], say: Say, force: frozenset[str],
              check: Callable[[CertSpec], str | None], challenges: Callable[[CertSpec], Challenges | None],
              sleep: Callable[[float], None] = time.sleep) -> tuple[Schedule, tuple[Outcome, ...]]:
    """Place the orders ``specs`` need now, paced, each installed where ``spec`` says on this machine.

    ``check``: why the challenge path is not served for a certificate (no order is placed then);
    ``challenges``: who puts the tokens where the CA looks (None: this machine's webroot)."""
    facts = {s.name: certs.read(s.certificate, s.key) for s in specs}
    now = certs.now_utc()
    history = acme_history.load(settings)
    plan = schedule(specs, facts, history, settings.tls.acme, now, settings.tls.renew_days, kinds, force)
    for held in plan.held:
        say(f"held {held.spec.name} (customer {held.spec.customer}): {held.reason}")
    outcomes: list[Outcome] = []
    if not plan.orders:
        return plan, ()
    account: Account | None = None
    start = time.monotonic()
    for planned in plan.orders:
        spec, kind = planned.due.spec, planned.due.kind
        wait = start + planned.offset - time.monotonic()
        if wait > 0:
            sleep(wait)
        began = time.monotonic()
        problem = check(spec)
        if problem:  # not the CA's fault: no order placed, nothing counted against the limits
            outcomes.append(Outcome(spec, kind, False, problem))
            say(outcomes[-1].line())
            continue
        try:
            if account is None:
                account = Account(settings.tls)
            issued = account.obtain(spec.domains, challenges(spec))
        except NotServed as exc:  # the tokens were not served: no challenge was answered, nothing counted
            outcomes.append(Outcome(spec, kind, False, str(exc), time.monotonic() - began))
            say(outcomes[-1].line())
            continue
        except AcmeError as exc:
            history = record(history, Order(certs.now_utc(), spec.name, spec.domains, False, kind), str(exc))
            acme_history.save(settings, history)
            outcomes.append(Outcome(spec, kind, False, str(exc), time.monotonic() - began))
            say(outcomes[-1].line())
            continue
        _install(settings, spec, issued.fullchain_pem, issued.key_pem)
        history = record(history, Order(certs.now_utc(), spec.name, spec.domains, True, kind))
        acme_history.save(settings, history)
        new = certs.read(spec.certificate, spec.key)
        detail = f"{', '.join(spec.domains)}; {planned.due.reason}"
        if new is not None and new.not_after is not None:
            detail += f"; valid until {new.not_after:%Y-%m-%d}, issuer {new.issuer}"
        outcomes.append(Outcome(spec, kind, True, detail, time.monotonic() - began))
        say(outcomes[-1].line())
    return plan, tuple(outcomes)
