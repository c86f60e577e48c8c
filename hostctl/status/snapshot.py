"""One status snapshot: the rows and what could not be read, from this machine or from each host.

The glue that `hostctl status` (and every ``--watch`` refresh) calls: it picks
the collector (local: ``status_collect``; a multi-host inventory:
``status_remote`` over SSH), then the pure ``status.rows`` on each result.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hostctl.inventory import placement
from hostctl.inventory.spec import AppSpec, Inventory
from hostctl.status import collect as status_collect, rows as status
from hostctl.status.rows import Row


@dataclass(frozen=True)
class Snapshot:
    rows: list[Row]
    emperor_errors: list[str] = field(default_factory=list)  # per Emperor (host) that did not answer
    notes: list[str] = field(default_factory=list)  # anything else that could not be read
    observed: status_collect.Observed | None = None  # local only: the next --watch refresh samples CPU from it

    @property
    def unread(self) -> list[str]:
        return self.emperor_errors + self.notes

    @property
    def emperor_error(self) -> str | None:
        return "; ".join(self.emperor_errors) or None


def take(inv: Inventory, apps: list[AppSpec], hosts: list[str], cpu_interval: float,
         previous: Snapshot | None = None, held: list[str] | None = None) -> Snapshot:
    """Read everything once. ``hosts``: read these servers over SSH (a multi-host inventory); empty: this machine.
    ``held``: over SSH, the customers held back by their broken file to look for on every host (None: all of them;
    locally ``apps`` has their live apps already)."""
    if not hosts and not inv.settings.hosts:
        observed = status_collect.observe(inv, apps, cpu_interval, previous.observed if previous else None)
        errors = [observed.emperor_error] if observed.emperor_error else []
        return Snapshot(status.rows(apps, observed), errors, list(observed.notes), observed)
    from hostctl.status import remote as status_remote  # SSH (paramiko) only for a multi-host inventory

    rows, errors, notes = [], [], []
    wanted = sorted(inv.held) if held is None else held
    for host, host_apps, observed in status_remote.observe_hosts(inv, placement.select_hosts(inv, hosts), apps, cpu_interval, wanted):
        rows += status.rows(host_apps, observed, host)
        errors += [observed.emperor_error] if observed.emperor_error else []
        notes += observed.notes
    return Snapshot(rows, errors, notes)
