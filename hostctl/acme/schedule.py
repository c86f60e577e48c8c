"""Which certificates to order from the ACME CA now, in what order and how paced: pure.

Given the certificates the inventory wants, what the edge read about the
existing ones (``certs.CertFacts``), the order history (``History``) and the
pacing policy (``tls.acme`` in hostctl.yaml), ``schedule()`` returns the orders
to place in this run, each with its start offset, and every certificate it
holds back with the reason. Nothing here reads files, talks to the CA or reads
the clock: ``now`` is passed in.

The limits mirror Let's Encrypt's so that adding many customers at once does
not trip them: new orders per account per 3 hours, certificates per registered
domain per week (renewals of the same names are exempt, as at Let's Encrypt),
and a per-certificate exponential backoff after failed orders. ``batch`` caps
one run; what does not fit waits for the next run.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace
from typing import Iterable, Literal, Mapping, Protocol

from hostctl.inventory.schema import AcmeSettings
from hostctl.render import tls
from hostctl.render.tls import CertSpec

Kind = Literal["issue", "renew"]
WINDOW_ORDERS = dt.timedelta(hours=3)
WINDOW_DOMAIN = dt.timedelta(days=7)
HISTORY_KEEP = dt.timedelta(days=8)


class FactsLike(Protocol):  # the parts of certs.CertFacts the decisions use (kept structural so this stays pure)
    names: frozenset[str]
    not_after: dt.datetime | None

    def unusable(self, now: dt.datetime) -> str | None: ...


@dataclass(frozen=True)
class Order:
    at: dt.datetime
    name: str
    domains: tuple[str, ...]
    ok: bool
    kind: Kind = "issue"


@dataclass(frozen=True)
class Failure:
    count: int
    last: dt.datetime
    error: str


@dataclass(frozen=True)
class History:
    """What earlier runs did: recent orders (for the rate windows) and failures per certificate (for backoff)."""

    orders: tuple[Order, ...] = ()
    failures: Mapping[str, Failure] = field(default_factory=dict)


@dataclass(frozen=True)
class Due:
    spec: CertSpec
    kind: Kind
    reason: str


@dataclass(frozen=True)
class Planned:
    due: Due
    offset: float  # seconds after the run starts: orders are paced `interval` apart


@dataclass(frozen=True)
class Held:
    spec: CertSpec
    reason: str


@dataclass(frozen=True)
class Schedule:
    orders: tuple[Planned, ...]
    held: tuple[Held, ...]


def need(spec: CertSpec, facts: FactsLike | None, now: dt.datetime, renew_days: int) -> Due | None:
    """Whether one ACME certificate needs an order, and why; None when it is fine."""
    if facts is None:
        return Due(spec, "issue", "no certificate yet")
    why = facts.unusable(now)
    if why:
        return Due(spec, "issue", f"the certificate cannot be used: {why}")
    missing = [d for d in spec.domains if not tls.covers(facts.names, d)]
    if missing:
        return Due(spec, "issue", f"not covered yet: {', '.join(missing)}")
    assert facts.not_after is not None
    left = facts.not_after - now
    if left <= dt.timedelta(days=renew_days):
        return Due(spec, "renew", f"expires in {max(left.days, 0)} days")
    return None


def registered_domain(domain: str) -> str:
    """The last two labels: an over-cautious stand-in for the public-suffix rule (``a.co.uk`` counts as ``co.uk``)."""
    return ".".join(domain.split(".")[-2:])


def backoff_until(failure: Failure, policy: AcmeSettings) -> dt.datetime:
    delay = min(policy.backoff * 2 ** (failure.count - 1), policy.backoff_max)
    return failure.last + dt.timedelta(seconds=delay)


def schedule(specs: Iterable[CertSpec], facts: Mapping[str, FactsLike | None], history: History, policy: AcmeSettings,
             now: dt.datetime, renew_days: int, kinds: frozenset[Kind] = frozenset({"issue", "renew"}),
             force: frozenset[str] = frozenset()) -> Schedule:
    """The orders of one run. ``force``: certificate names to order now regardless of expiry and backoff."""
    due: list[Due] = []
    for spec in specs:
        if spec.source != "acme":
            continue
        item = need(spec, facts.get(spec.name), now, renew_days)
        if spec.name in force:
            item = item or Due(spec, "renew", "forced")
        elif item is None or item.kind not in kinds:
            continue
        due.append(item)
    # Renewals first, soonest expiry first; then new certificates in inventory order.
    renewals = sorted((d for d in due if d.kind == "renew"), key=lambda d: _not_after(facts.get(d.spec.name), now))
    due = renewals + [d for d in due if d.kind == "issue"]

    recent = [o for o in history.orders if now - o.at < WINDOW_ORDERS]
    budget = policy.orders_per_3h - len(recent)
    per_domain: dict[str, int] = {}
    for order in history.orders:
        if order.ok and now - order.at < WINDOW_DOMAIN:
            for reg in {registered_domain(d) for d in order.domains}:
                per_domain[reg] = per_domain.get(reg, 0) + 1

    planned: list[Planned] = []
    held: list[Held] = []
    for item in due:
        name = item.spec.name
        failure = history.failures.get(name)
        if failure and name not in force and now < backoff_until(failure, policy):
            until = backoff_until(failure, policy)
            held.append(Held(item.spec, f"{item.reason}; backing off after {failure.count} failed order"
                                        f"{'s' if failure.count > 1 else ''} until {until:%Y-%m-%d %H:%M} UTC (last: {failure.error})"))
            continue
        if len(planned) >= policy.batch:
            held.append(Held(item.spec, f"{item.reason}; this run's batch of {policy.batch} orders is full, the next run orders it"))
            continue
        if budget <= 0:
            held.append(Held(item.spec, f"{item.reason}; {policy.orders_per_3h} orders in the last 3 hours (tls.acme.orders_per_3h)"))
            continue
        regs = {registered_domain(d) for d in item.spec.domains}
        full = sorted(r for r in regs if per_domain.get(r, 0) >= policy.per_domain_per_week)
        if full and item.kind == "issue":  # renewals of the same names are exempt
            held.append(Held(item.spec, f"{item.reason}; {policy.per_domain_per_week} certificates for {', '.join(full)} "
                                        "in the last 7 days (tls.acme.per_domain_per_week)"))
            continue
        for reg in regs:
            per_domain[reg] = per_domain.get(reg, 0) + 1
        budget -= 1
        planned.append(Planned(item, len(planned) * policy.interval))
    return Schedule(tuple(planned), tuple(held))


def _not_after(facts: FactsLike | None, now: dt.datetime) -> dt.datetime:
    return facts.not_after if facts is not None and facts.not_after is not None else now


def record(history: History, order: Order, error: str | None = None) -> History:
    """History after one order: it joins the rate windows; a failure counts up, a success clears it."""
    orders = tuple(o for o in history.orders if order.at - o.at < HISTORY_KEEP) + (order,)
    failures = dict(history.failures)
    if order.ok:
        failures.pop(order.name, None)
    else:
        before = failures.get(order.name)
        failures[order.name] = Failure((before.count if before else 0) + 1, order.at, error or "unknown error")
    return replace(history, orders=orders, failures=failures)
