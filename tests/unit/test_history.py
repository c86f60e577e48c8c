"""Generations (for rollback) and the quarantine record in state_dir; choosing a rollback target."""

from __future__ import annotations

from pathlib import Path

import pytest

from hostctl.engine import history
from hostctl.engine.rollback import choose, desired_files
from hostctl.errors import HostctlError
from hostctl.inventory.schema import Settings
from hostctl.plan.manifest import Entry, Manifest, sha256
from hostctl.plan.quarantine import Rejection


def _settings(tmp_path: Path) -> Settings:
    return Settings(state_dir=str(tmp_path / "state"))


def _apply(settings: Settings, files: dict[str, tuple[str, str]], note: str = "") -> history.Generation:
    """Record a generation of ``{path: (customer, content)}``."""
    manifest = Manifest({p: Entry(sha256(text), "vassal", c, "web") for p, (c, text) in files.items()})
    return history.record(settings, manifest, {p: text for p, (_, text) in files.items()}, {}, source="apply", note=note,
                          inventory={"customers/a.yaml": note}, when=0)


def test_generations_round_trip_and_share_blobs(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    g1 = _apply(settings, {"/e/a.ini": ("a", "A1"), "/e/b.ini": ("b", "B1")}, "one")
    g2 = _apply(settings, {"/e/a.ini": ("a", "A2"), "/e/b.ini": ("b", "B1")}, "two")
    assert history.numbers(settings) == [1, 2]
    assert history.load(settings, 2) == g2 and history.latest(settings) == g2
    assert g1.origin == {"a": 1, "b": 1} and g2.base == 2
    assert history.blob(settings, sha256("A1")) == "A1"
    blobs = sorted(p.name for p in (tmp_path / "state" / "generations" / "blobs").iterdir())
    assert blobs == sorted({sha256("A1"), sha256("A2"), sha256("B1")})  # B1 stored once
    assert history.load(settings, 1).inventory == {"customers/a.yaml": "one"}


def test_prune_keeps_the_newest_and_their_blobs(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    for i in range(history.KEEP + 3):
        _apply(settings, {"/e/a.ini": ("a", f"A{i}")})
    assert history.numbers(settings) == list(range(4, history.KEEP + 4))
    assert history.blob(settings, sha256("A0")) is None and history.blob(settings, sha256("A3")) == "A3"


def test_full_rollback_walks_back_one_generation_at_a_time(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    for i in (1, 2, 3):
        _apply(settings, {"/e/a.ini": ("a", f"A{i}"), "/e/b.ini": ("b", f"B{i}")})
    gens = [history.load(settings, n) for n in history.numbers(settings)]
    target, origin, base, note = choose(gens, None)
    assert (target.number, base, note) == (2, 2, "rollback to generation 2")
    manifest = Manifest({p: Entry(f.sha256, f.kind, f.customer, f.app) for p, f in target.files.items()})
    history.record(settings, manifest, {}, {}, source="rollback", note=note, inventory={}, base=base, origin=origin)
    gens = [history.load(settings, n) for n in history.numbers(settings)]
    assert choose(gens, None)[0].number == 1  # a second rollback goes further back
    files = desired_files(settings, gens[-1], gens[0], None)
    assert {p: f.content for p, f in files.items()} == {"/e/a.ini": "A1", "/e/b.ini": "B1"}


def test_customer_rollback_touches_only_that_customer(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    _apply(settings, {"/e/a.ini": ("a", "A1"), "/e/b.ini": ("b", "B1")})
    _apply(settings, {"/e/a.ini": ("a", "A1"), "/e/b.ini": ("b", "B2")})
    _apply(settings, {"/e/a.ini": ("a", "A2"), "/e/b.ini": ("b", "B2")})
    gens = [history.load(settings, n) for n in history.numbers(settings)]
    target, origin, base, note = choose(gens, "b")
    assert target.number == 1 and origin == {"a": 3, "b": 1} and base == 3  # newest older generation where b differs
    files = desired_files(settings, gens[-1], target, "b")
    assert {p: f.content for p, f in files.items()} == {"/e/a.ini": "A2", "/e/b.ini": "B1"}
    with pytest.raises(HostctlError, match="no kept generation has other files for customer 'c'"):
        choose(gens, "c")


def test_nothing_to_roll_back_to(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    with pytest.raises(HostctlError, match="nothing has been applied yet"):
        choose([], None)
    _apply(settings, {"/e/a.ini": ("a", "A1")})
    with pytest.raises(HostctlError, match="generation 1 is the oldest kept"):
        choose([history.load(settings, 1)], None)


def test_quarantine_record(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    assert history.quarantined(settings) == {}
    history.save_quarantine(settings, [Rejection("b", "/n/b.conf", "nginx -t: x"), Rejection("b", "/e/b.ini", "env: y"),
                                       Rejection("a", "/n/a.conf", "z")], when=0)
    assert history.quarantined(settings) == {"a": "/n/a.conf: z", "b": "/e/b.ini: env: y; nginx -t: x"}
    assert history.read_quarantine(settings)["a"]["since"] == "1970-01-01T00:00:00Z"
    history.save_quarantine(settings, [], when=0)
    assert history.quarantined(settings) == {}


def test_listing_says_which_customers_each_generation_changed_and_which_is_live(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    g1 = _apply(settings, {"/e/a.ini": ("a", "A1"), "/e/b.ini": ("b", "B1")}, "one")
    g2 = _apply(settings, {"/e/a.ini": ("a", "A2"), "/e/b.ini": ("b", "B1")}, "two")
    g3 = _apply(settings, {"/e/a.ini": ("a", "A2"), "/e/b.ini": ("b", "B1"), "/e/c.ini": ("c", "C1")}, "three")
    g4 = _apply(settings, {"/e/a.ini": ("a", "A2"), "/e/c.ini": ("c", "C1")}, "four")  # b left
    gens = [g1, g2, g3, g4]
    live = {p: f.sha256 for p, f in g2.files.items()}  # e.g. after a rollback whose record was lost
    lines = history.listing(gens, live, first_kept=True)
    assert [line.split("  changed: ")[1].removesuffix("  <- live") for line in lines] == ["a, b", "a", "c", "b"]
    assert [line.endswith("  <- live") for line in lines] == [False, True, False, False]
    assert lines[0].split()[:3] == ["1", "1970-01-01T00:00:00Z", "apply"]
    # after pruning, the oldest kept one cannot say what it changed
    assert history.listing(gens[2:], {p: f.sha256 for p, f in g4.files.items()}, first_kept=False)[0].endswith(
        "changed: ? (the generation before it was pruned)")
    # live files that match no generation (an interrupted apply, hand edits) are said too
    assert history.listing(gens, {"/e/a.ini": "x"}, first_kept=True)[-1] == (
        "no kept generation matches the live files (an apply was interrupted, or files changed since)")
