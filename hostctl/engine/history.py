"""What was applied, kept in ``state_dir`` by the engine (``hostctl/engine/core/history.py``): read here by settings.

Generations (for rollback) and the quarantine record are written by the engine
on the server it runs on; the control side reads them through these functions,
which take the inventory's ``Settings``, and snapshots the inventory a
generation records.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Mapping

from hostctl.engine.core import history as _h
from hostctl.engine.core.history import KEEP, FileRecord, Generation  # noqa: F401
from hostctl.engine.core.manifest import Manifest
from hostctl.engine.core.quarantine import Rejection
from hostctl.errors import from_engine
from hostctl.inventory.schema import Settings


def quarantine_file(settings: Settings) -> str:
    return _h.quarantine_file(settings.state_dir)


def quarantined(settings: Settings) -> dict[str, str]:
    """Customers the last apply held back: ``{customer: "file: reason"}`` (empty when none)."""
    return {name: f"{item['file']}: {item['reason']}" for name, item in read_quarantine(settings).items()}


def read_quarantine(settings: Settings) -> dict[str, dict[str, str]]:
    return _h.read_quarantine(settings.state_dir)


def save_quarantine(settings: Settings, rejections: Iterable[Rejection], when: float) -> None:
    _h.save_quarantine(settings.state_dir, rejections, when)


def numbers(settings: Settings) -> list[int]:
    return _h.numbers(settings.state_dir)


def path(settings: Settings, number: int) -> str:
    return _h.path(settings.state_dir, number)


def load(settings: Settings, number: int) -> Generation:
    with from_engine():
        return _h.load(settings.state_dir, number)


def latest(settings: Settings) -> Generation | None:
    with from_engine():
        return _h.latest(settings.state_dir)


def blob(settings: Settings, digest: str) -> str | None:
    return _h.blob(settings.state_dir, digest)


def snapshot_inventory(root: Path) -> dict[str, str]:
    """The inventory's own files (settings and customers) as text."""
    root = Path(root)
    out = {}
    candidates = [root / "hostctl.yaml", *sorted((root / "customers").glob("*.yaml"))]
    for where in candidates:
        try:
            out[str(where.relative_to(root))] = where.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
    return out


def record(settings: Settings, manifest: Manifest, contents: Mapping[str, str], modes: Mapping[str, int], *,
           source: str, note: str, inventory: Mapping[str, str], base: int | None = None,
           origin: Mapping[str, int] | None = None, when: float | None = None) -> Generation:
    return _h.record(settings.state_dir, manifest, contents, modes, source=source, note=note, inventory=inventory,
                     base=base, origin=origin, when=when)


def prune(settings: Settings, keep: int = KEEP) -> None:
    _h.prune(settings.state_dir, keep)


# --- the listing of `rollback --list` -------------------------------------------------


def changed_customers(before: Generation | None, after: Generation) -> list[str]:
    """Customers whose files differ between two generations (added, changed or removed)."""
    old = {p: (f.sha256, f.customer) for p, f in (before.files if before else {}).items()}
    new = {p: (f.sha256, f.customer) for p, f in after.files.items()}
    return sorted({c for p, (_, c) in old.items() if new.get(p) != old[p]} | {c for p, (_, c) in new.items() if old.get(p) != new[p]})


def listing(gens: list[Generation], live: Mapping[str, str], first_kept: bool) -> list[str]:
    """One line per generation: number, time, source, files, note, the customers it changed, and
    ``<- live`` on the one whose files are the live ones (``live``: path -> sha256 from the manifest).
    ``first_kept``: the oldest one is the first ever (nothing was pruned before it), so it changed
    every customer it has."""
    live = dict(live)
    lines, matched = [], False
    for i, gen in enumerate(gens):
        if i == 0 and not first_kept:
            changed = "? (the generation before it was pruned)"
        else:
            names = changed_customers(gens[i - 1] if i else None, gen)
            changed = ", ".join(names) or "none"
        is_live = {p: f.sha256 for p, f in gen.files.items()} == live
        matched = matched or is_live
        lines.append(f"{gen.number:6d}  {gen.time}  {gen.source:8s}  {len(gen.files)} files  {gen.note}  changed: {changed}"
                     + ("  <- live" if is_live else ""))
    if gens and not matched:
        lines.append("no kept generation matches the live files (an apply was interrupted, or files changed since)")
    return lines
