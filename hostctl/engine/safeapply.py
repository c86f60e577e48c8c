"""The safe-apply steps around ``apply.execute``: probe and roll back after going live, then record.

Before anything is written, ``vetting.vet`` holds back customers whose output
fails its checks. After everything is live, this module probes the changed
customers that ask for it (``probe.py``) and puts a customer whose probe
fails back on its last-known-good files. Finally it records what is live as a
generation (``history.py``, for ``hostctl rollback``) and who is quarantined.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Mapping

from hostctl.engine import history, nginx, probe
from hostctl.engine.pipeline import Prepared
from hostctl.plan import quarantine
from hostctl.plan.diff import Change, Plan
from hostctl.plan.manifest import Manifest
from hostctl.plan.quarantine import Rejection


@dataclass(frozen=True)
class Provenance:
    """Where the files an execute writes come from, for the generation it records."""

    source: str = "apply"  # or "rollback"
    note: str = ""
    base: int | None = None
    origin: Mapping[str, int] | None = None
    inventory: Mapping[str, str] | None = None  # None: snapshot the inventory directory
    readback: bool = True  # rollback restores files that were vetted when first applied
    probe: bool = True  # rollback does not probe: the probes in the inventory are for the inventory's version


@dataclass(frozen=True)
class Effects:
    """The writes ``apply`` already knows how to do, handed in (this module does not write live files)."""

    restore: Callable[[list[Change]], None]  # put each change's ``before`` back
    poke: Callable[[], None]  # make the Emperor rescan
    reload_nginx: Callable[[], str]


@dataclass
class Aftercare:
    plan: Plan
    rejections: list[Rejection] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)


def probe_changed(prepared: Prepared, plan: Plan, old: Manifest, effects: Effects) -> Aftercare:
    """Probe the changed customers that have probes; roll back the failures."""
    result = Aftercare(plan)
    targets = probe.targets(prepared.inventory, quarantine.changed_customers(plan))
    settings = prepared.inventory.settings
    if targets and not settings.nginx.reload_command and nginx.serve_pid(settings) is None:
        result.messages.append(f"probes skipped for {len(targets)} app(s): nginx is not running (start it with `hostctl serve`)")
        return result
    outcomes = probe.run(prepared.inventory.settings.nginx.listen, targets)
    failed = [o for o in outcomes if not o.ok]
    if not failed:
        return result
    customers = {o.target.customer for o in failed}
    undo = [c for c in plan.changes if c.customer in customers and c.action != "delete"]
    effects.restore(undo)
    if any(c.kind != "nginx" for c in undo):
        effects.poke()
    if any(c.kind == "nginx" for c in undo):
        result.messages.append(effects.reload_nginx())
    for o in failed:
        t = o.target
        result.rejections.append(Rejection(t.customer, f"http://{t.host}{t.path}",
                                           f"probe expected HTTP {t.status} within {t.timeout:g} s, got {o.got}; rolled back"))
    result.plan = quarantine.restrict(plan, old, customers)
    return result


def record(prepared: Prepared, plan: Plan, rejections: list[Rejection], provenance: Provenance,
           when: float | None = None) -> history.Generation:
    """Record what is live now as a new generation."""
    settings = prepared.inventory.settings
    contents = {p: f.content for p, f in prepared.desired.items()}
    held = {r.customer for r in rejections}
    contents.update({c.path: c.before for c in prepared.plan.changes if c.customer in held and c.before is not None})
    modes = {p: f.mode for p, f in prepared.desired.items()}
    snapshot = provenance.inventory if provenance.inventory is not None else history.snapshot_inventory(prepared.inventory.root)
    return history.record(settings, plan.manifest, contents, modes, source=provenance.source, note=provenance.note,
                          inventory=snapshot, base=provenance.base, origin=provenance.origin,
                          when=time.time() if when is None else when)


def save_quarantine(prepared: Prepared, rejections: list[Rejection]) -> None:
    """Replace the quarantine record (skipped when both old and new are empty)."""
    settings = prepared.inventory.settings
    if rejections or history.read_quarantine(settings):
        history.save_quarantine(settings, rejections, time.time())
