"""Vet candidate server blocks with ``nginx -t`` before anything goes live, holding back only the customers at fault.

``nginx -t`` runs on the whole candidate set (every server block as it will be
after apply: the live ones, files hostctl did not write included, with the
plan's changes on top) in a scaffold: one call, ~5 ms plus ~0.7 ms per block.
Only when it fails are the changed customers' blocks checked alone, by
bisection (``quarantine.find_culprits``), and the set is checked again without
the culprits. If it still fails (customers that clash only together), the
remaining changed customers are admitted group by group onto the
last-known-good set while it passes (``quarantine.admit``). When the
last-known-good set itself fails, the customers whose live blocks fail on their
own (their state on the server is broken: a log directory that is a file now)
are suspended: their blocks are set aside into ``state_dir/held/``, so nginx
loads for everyone else; if it still fails (a file hostctl did not write),
nothing is written. ``vet_live`` does the same at boot, before nginx starts.

(The read-back of rendered vassals against the inventory is pure and done on
the control side; its rejections arrive with the job.)
"""

from __future__ import annotations

import os
from typing import Callable, Mapping, Sequence

from hostctl.engine.core import fsops, quarantine
from hostctl.engine.core.errors import EngineError
from hostctl.engine.core.manifest import Manifest
from hostctl.engine.core.nginx import CheckResult
from hostctl.engine.core.plan import Change
from hostctl.engine.core.quarantine import Rejection

Check = Callable[[Mapping[str, str]], CheckResult]
HELD_DIR = "held"  # state_dir/held: server blocks set aside because they fail nginx -t on their own


def live_blocks(nginx_dir: str) -> dict[str, str]:
    """Every server block nginx loads from ``nginx_dir`` now: ``{file name: content}``."""
    out = {}
    try:
        entries = list(os.scandir(nginx_dir))
    except FileNotFoundError:
        return out
    for entry in entries:
        if entry.name.endswith(".conf") and entry.is_file(follow_symlinks=False):
            with open(entry.path, encoding="utf-8", errors="replace") as fh:
                out[entry.name] = fh.read()
    return out


class Candidates:
    """The server blocks as they will be live, for any set of held-back customers."""

    def __init__(self, live: Mapping[str, str], changes: Sequence[Change], manifest: Manifest):
        self.live = dict(live)
        self.changes = [c for c in changes if c.kind == "nginx"]
        self.manifest = manifest
        self.suspended: dict[str, list[str]] = {}  # customer -> its live blocks that fail alone (to set aside)

    def suspend(self, customers: set[str]) -> None:
        """Leave these customers' live server blocks out of every candidate set."""
        owners = owners_of(self.manifest)
        for name in [n for n in self.live if owners.get(n) in customers]:
            self.suspended.setdefault(owners[name], []).append(name)
            del self.live[name]

    def with_held(self, held: set[str]) -> dict[str, str]:
        blocks = dict(self.live)
        for change in self.changes:
            name = os.path.basename(change.path)
            if change.action == "delete":
                blocks.pop(name, None)
            elif change.customer not in held and change.after is not None:
                blocks[name] = change.after
        return blocks

    def own(self, customer: str) -> dict[str, str]:
        """The customer's server blocks as they will be (for checking it alone)."""
        after = {c.path: c.after for c in self.changes if c.customer == customer and c.after is not None}
        out = {}
        for path, entry in self.manifest.files.items():
            if entry.kind == "nginx" and entry.customer == customer:
                text = after.get(path, self.live.get(os.path.basename(path)))
                if text is not None:
                    out[os.path.basename(path)] = text
        return out

    def files_of(self, customer: str) -> str:
        return ", ".join(sorted(p for p, e in self.manifest.files.items() if e.customer == customer and e.kind == "nginx"))


def first_error(output: str) -> str:
    for line in output.splitlines():
        if "[emerg]" in line or "[crit]" in line or "[alert]" in line:
            return line.split("] ", 1)[-1].split(": ", 1)[-1] if "#" in line else line
    return output.strip().splitlines()[0] if output.strip() else "nginx -t failed"


def owners_of(manifest: Manifest) -> dict[str, str]:
    """``{server block file name: customer}`` for the blocks hostctl wrote."""
    return {os.path.basename(p): e.customer for p, e in manifest.files.items() if e.kind == "nginx"}


def broken_live(live: Mapping[str, str], owners: Mapping[str, str], check: Check) -> dict[str, str]:
    """The customers whose live server blocks fail ``nginx -t`` on their own: ``{customer: nginx's first error}``.

    For when the live set itself fails: one customer's state on the server broken (its log
    directory replaced by a file, a certificate file gone) must not keep nginx from loading,
    or from starting after a reboot, for everyone else. Found by bisection, as at apply.
    """
    by_customer: dict[str, dict[str, str]] = {}
    for name, text in live.items():
        if name in owners:
            by_customer.setdefault(owners[name], {})[name] = text
    results: dict[str, CheckResult] = {}

    def passes(group: Sequence[str]) -> bool:
        result = check({name: text for customer in group for name, text in by_customer[customer].items()})
        if len(group) == 1:
            results[group[0]] = result
        return result.ok

    return {c: first_error(results[c].output) for c in quarantine.find_culprits(sorted(by_customer), passes)}


def held_dir(state_dir: str) -> str:
    return os.path.join(state_dir, HELD_DIR)


def set_aside(nginx_dir: str, state_dir: str, names: Sequence[str]) -> None:
    """Move server blocks out of nginx's include, into ``state_dir/held/`` (for the operator to read).

    The manifest still names them: the next plan writes them again ("create")."""
    if not names:
        return
    held = held_dir(state_dir)
    os.makedirs(held, mode=0o700, exist_ok=True)
    for name in names:
        path = os.path.join(nginx_dir, name)
        try:
            with open(path, "rb") as fh:
                content = fh.read()
        except FileNotFoundError:
            continue
        fsops.write_atomic(os.path.join(held, name), content, 0o600)
        fsops.remove(path)
    fsops.fsync_dir(nginx_dir)


def vet_live(nginx_dir: str, state_dir: str, manifest: Manifest, check: Check) -> tuple[dict[str, str], CheckResult]:
    """At boot, before nginx starts: ``nginx -t`` on the live server blocks; when it fails, the blocks of the
    customers that fail alone are set aside. Returns those customers (with nginx's error) and the check after."""
    live = live_blocks(nginx_dir)
    first = check(live)
    if first.ok:
        return {}, first
    owners = owners_of(manifest)
    broken = broken_live(live, owners, check)
    set_aside(nginx_dir, state_dir, [n for n in live if owners.get(n) in broken])
    return broken, check({n: t for n, t in live.items() if owners.get(n) not in broken}) if broken else first


def nginx_problems(candidates: Candidates, held: set[str], check: Check) -> list[Rejection]:
    """``nginx -t`` on the candidate set; find the culprits only when it fails.

    When even the last-known-good set fails, the customers whose live blocks fail on their
    own are suspended first (``candidates.suspended``: the engine sets those blocks aside)."""
    first = check(candidates.with_held(held))
    if first.ok:
        return []
    if "Too many open files" in first.output:  # the machine's limit, not a customer's fault
        raise EngineError("nginx -t ran out of file descriptors (two log files per app); raise the open-files "
                          f"limit (ulimit -n, LimitNOFILE=) and apply again; nothing was written:\n{first.output}")
    suspended: list[Rejection] = []
    if not check(candidates.with_held(held | {c.customer for c in candidates.changes})).ok:
        broken = broken_live(candidates.live, owners_of(candidates.manifest), check)
        suspended = [Rejection(c, candidates.files_of(c), f"its live server blocks fail nginx -t on their own ({error}); "
                               f"set aside into state_dir/{HELD_DIR}/ so that nginx loads for everyone else; the next apply "
                               "writes them again") for c, error in sorted(broken.items())]
        candidates.suspend(set(broken))
        held = held | set(broken)
        first = check(candidates.with_held(held))
        if first.ok:
            return suspended
    nginx_customers = sorted({c.customer for c in candidates.changes if c.action != "delete" and c.customer not in held})
    results: dict[str, CheckResult] = {}

    def passes(group: Sequence[str]) -> bool:
        result = check({name: text for customer in group for name, text in candidates.own(customer).items()})
        if len(group) == 1:
            results[group[0]] = result
        return result.ok

    culprits = quarantine.find_culprits(nginx_customers, passes)
    rejections = suspended + [Rejection(c, candidates.files_of(c), f"nginx -t: {first_error(results[c].output)}") for c in culprits]
    held = held | set(culprits)
    again = check(candidates.with_held(held))
    if again.ok:
        return rejections
    rest = [c for c in nginx_customers if c not in held]
    last = check(candidates.with_held(held | set(rest)))
    if not last.ok:
        raise EngineError("nginx -t fails even with every customer's last-known-good server blocks "
                          f"(a file hostctl did not write, or a hand edit?); nothing was written:\n{last.output}")
    _admitted, refused = quarantine.admit(rest, lambda group: check(candidates.with_held(held | (set(rest) - set(group)))).ok)
    reason = f"nginx -t fails with this customer's new server blocks among the others: {first_error(again.output)}"
    return rejections + [Rejection(c, candidates.files_of(c), reason) for c in refused]
