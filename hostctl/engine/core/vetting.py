"""Vet candidate server blocks with ``nginx -t`` before anything goes live, holding back only the customers at fault.

``nginx -t`` runs on the whole candidate set (every server block as it will be
after apply: the live ones, files hostctl did not write included, with the
plan's changes on top) in a scaffold: one call, ~5 ms plus ~0.7 ms per block.
Only when it fails are the changed customers' blocks checked alone, by
bisection (``quarantine.find_culprits``), and the set is checked again without
the culprits. If it still fails (customers that clash only together), the
remaining changed customers are admitted group by group onto the
last-known-good set while it passes (``quarantine.admit``); if even the
last-known-good set fails, nothing is written.

(The read-back of rendered vassals against the inventory is pure and done on
the control side; its rejections arrive with the job.)
"""

from __future__ import annotations

import os
from typing import Callable, Mapping, Sequence

from hostctl.engine.core import quarantine
from hostctl.engine.core.errors import EngineError
from hostctl.engine.core.manifest import Manifest
from hostctl.engine.core.nginx import CheckResult
from hostctl.engine.core.plan import Change
from hostctl.engine.core.quarantine import Rejection

Check = Callable[[Mapping[str, str]], CheckResult]


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


def nginx_problems(candidates: Candidates, held: set[str], check: Check) -> list[Rejection]:
    """``nginx -t`` on the candidate set; find the culprits only when it fails."""
    first = check(candidates.with_held(held))
    if first.ok:
        return []
    if "Too many open files" in first.output:  # the machine's limit, not a customer's fault
        raise EngineError("nginx -t ran out of file descriptors (two log files per app); raise the open-files "
                          f"limit (ulimit -n, LimitNOFILE=) and apply again; nothing was written:\n{first.output}")
    nginx_customers = sorted({c.customer for c in candidates.changes if c.action != "delete" and c.customer not in held})
    results: dict[str, CheckResult] = {}

    def passes(group: Sequence[str]) -> bool:
        result = check({name: text for customer in group for name, text in candidates.own(customer).items()})
        if len(group) == 1:
            results[group[0]] = result
        return result.ok

    culprits = quarantine.find_culprits(nginx_customers, passes)
    rejections = [Rejection(c, candidates.files_of(c), f"nginx -t: {first_error(results[c].output)}") for c in culprits]
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
