"""Which ACME certificates are ordered, in what order, paced how, and which are held back (pure)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pytest

from hostctl.acme.schedule import Failure, History, Order, backoff_until, need, record, registered_domain, schedule
from hostctl.inventory.schema import AcmeSettings
from hostctl.render.tls import CertSpec

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.timezone.utc)


@dataclass
class Facts:
    names: frozenset[str]
    not_after: dt.datetime | None
    why: str | None = None

    def unusable(self, now: dt.datetime) -> str | None:
        return self.why


def spec(name: str, *domains: str, source: str = "acme") -> CertSpec:
    customer, app = name.split("_")
    return CertSpec(name, customer, app, source, f"/c/{name}/fullchain.pem", f"/c/{name}/privkey.pem", domains)  # type: ignore[arg-type]


def facts(*names: str, days: float = 80, why: str | None = None) -> Facts:
    return Facts(frozenset(names), NOW + dt.timedelta(days=days), why)


@pytest.mark.parametrize("current, expected", [
    (None, ("issue", "no certificate yet")),
    (facts("a.test", days=80), None),
    (facts("a.test", days=29.5), ("renew", "expires in 29 days")),
    (facts("a.test", days=30), ("renew", "expires in 30 days")),
    (facts("a.test", days=30.5), None),
    (facts("a.test", days=-2, why="it expired on ..."), ("issue", "the certificate cannot be used: it expired on ...")),
    (facts("b.test"), ("issue", "not covered yet: a.test")),
])
def test_need(current: Facts | None, expected: tuple | None) -> None:
    got = need(spec("x_web", "a.test"), current, NOW, 30)
    assert ((got.kind, got.reason) if got else None) == expected


def test_renewals_first_soonest_expiry_first_then_new_ones_in_inventory_order_paced_by_interval() -> None:
    specs = [spec("n1_web", "n1.test"), spec("r1_web", "r1.test"), spec("n2_web", "n2.test"), spec("r2_web", "r2.test"),
             spec("ok_web", "ok.test"), spec("own_web", "own.test", source="provided")]
    current = {"r1_web": facts("r1.test", days=20), "r2_web": facts("r2.test", days=3), "ok_web": facts("ok.test", days=70),
               "own_web": None}
    plan = schedule(specs, current, History(), AcmeSettings(interval=2.5), NOW, 30)
    assert [(p.due.spec.name, p.due.kind, p.offset) for p in plan.orders] == [
        ("r2_web", "renew", 0.0), ("r1_web", "renew", 2.5), ("n1_web", "issue", 5.0), ("n2_web", "issue", 7.5)]
    assert plan.held == ()


def test_kinds_select_issue_or_renew_and_force_orders_anything() -> None:
    specs = [spec("n_web", "n.test"), spec("r_web", "r.test"), spec("ok_web", "ok.test")]
    current = {"r_web": facts("r.test", days=5), "ok_web": facts("ok.test", days=70)}
    issue = schedule(specs, current, History(), AcmeSettings(), NOW, 30, frozenset({"issue"}))
    renew = schedule(specs, current, History(), AcmeSettings(), NOW, 30, frozenset({"renew"}))
    forced = schedule(specs, current, History(), AcmeSettings(), NOW, 30, frozenset({"renew"}), force=frozenset({"ok_web"}))
    assert [p.due.spec.name for p in issue.orders] == ["n_web"]
    assert [p.due.spec.name for p in renew.orders] == ["r_web"]
    assert [(p.due.spec.name, p.due.reason) for p in forced.orders] == [("r_web", "expires in 5 days"), ("ok_web", "forced")]


def test_batch_caps_one_run() -> None:
    specs = [spec(f"c{i}_web", f"c{i}.test") for i in range(5)]
    plan = schedule(specs, {}, History(), AcmeSettings(batch=3, interval=0), NOW, 30)
    assert [p.due.spec.name for p in plan.orders] == ["c0_web", "c1_web", "c2_web"]
    assert [h.reason for h in plan.held] == ["no certificate yet; this run's batch of 3 orders is full, the next run orders it"] * 2


def test_orders_per_3h_counts_recent_orders_failed_or_not() -> None:
    history = History(orders=(Order(NOW - dt.timedelta(hours=1), "a_web", ("a.test",), True),
                              Order(NOW - dt.timedelta(hours=2), "b_web", ("b.test",), False),
                              Order(NOW - dt.timedelta(hours=4), "c_web", ("c.test",), True)))  # outside the window
    plan = schedule([spec("d_web", "d.test"), spec("e_web", "e.test")], {}, history, AcmeSettings(orders_per_3h=3), NOW, 30)
    assert [p.due.spec.name for p in plan.orders] == ["d_web"]
    assert plan.held[0].reason == "no certificate yet; 3 orders in the last 3 hours (tls.acme.orders_per_3h)"


def test_per_registered_domain_limit_holds_new_certificates_but_not_renewals() -> None:
    week = tuple(Order(NOW - dt.timedelta(days=d), f"s{d}_web", (f"s{d}.shop.example",), True) for d in (1, 2, 6))
    old = (Order(NOW - dt.timedelta(days=8), "s8_web", ("s8.shop.example",), True),)  # outside the week
    specs = [spec("new_web", "new.shop.example"), spec("other_web", "other.example"), spec("s1_web", "s1.shop.example")]
    current = {"s1_web": facts("s1.shop.example", days=10)}
    plan = schedule(specs, current, History(orders=week + old), AcmeSettings(per_domain_per_week=3), NOW, 30)
    assert [p.due.spec.name for p in plan.orders] == ["s1_web", "other_web"]
    assert [(h.spec.name, h.reason) for h in plan.held] == [
        ("new_web", "no certificate yet; 3 certificates for shop.example in the last 7 days (tls.acme.per_domain_per_week)")]


def test_the_limit_counts_orders_planned_in_the_same_run() -> None:
    specs = [spec(f"c{i}_web", f"c{i}.shop.example") for i in range(4)]
    plan = schedule(specs, {}, History(), AcmeSettings(per_domain_per_week=2), NOW, 30)
    assert [p.due.spec.name for p in plan.orders] == ["c0_web", "c1_web"]
    assert len(plan.held) == 2


@pytest.mark.parametrize("count, minutes_ago, held", [
    (1, 5, True),    # 10 min backoff after the first failure
    (1, 11, False),
    (2, 15, True),   # 20 min after the second
    (2, 21, False),
    (10, 60 * 23, True),  # capped at backoff_max (1 day)
    (10, 60 * 25, False),
])
def test_backoff_doubles_per_failure_up_to_the_cap(count: int, minutes_ago: int, held: bool) -> None:
    failure = Failure(count, NOW - dt.timedelta(minutes=minutes_ago), "challenge failed: x.test: connection refused")
    policy = AcmeSettings(backoff=600, backoff_max=86400)
    plan = schedule([spec("x_web", "x.test")], {}, History(failures={"x_web": failure}), policy, NOW, 30)
    assert bool(plan.held) is held and bool(plan.orders) is not held
    if held:
        until = backoff_until(failure, policy)
        assert plan.held[0].reason == (f"no certificate yet; backing off after {count} failed order{'s' if count > 1 else ''} "
                                       f"until {until:%Y-%m-%d %H:%M} UTC (last: challenge failed: x.test: connection refused)")
    forced = schedule([spec("x_web", "x.test")], {}, History(failures={"x_web": failure}), policy, NOW, 30, force=frozenset({"x_web"}))
    assert len(forced.orders) == 1


def test_record_counts_failures_clears_them_on_success_and_forgets_old_orders() -> None:
    history = History(orders=(Order(NOW - dt.timedelta(days=9), "old_web", ("old.test",), True),))
    history = record(history, Order(NOW, "x_web", ("x.test",), False), "boom")
    history = record(history, Order(NOW + dt.timedelta(minutes=20), "x_web", ("x.test",), False), "boom again")
    assert history.failures["x_web"] == Failure(2, NOW + dt.timedelta(minutes=20), "boom again")
    assert [o.name for o in history.orders] == ["x_web", "x_web"]
    history = record(history, Order(NOW + dt.timedelta(hours=1), "x_web", ("x.test",), True))
    assert "x_web" not in history.failures and len(history.orders) == 3


@pytest.mark.parametrize("domain, expected", [("a.example", "a.example"), ("x.y.shop.example", "shop.example"),
                                              ("www.shop.co.uk", "co.uk")])
def test_registered_domain(domain: str, expected: str) -> None:
    assert registered_domain(domain) == expected
