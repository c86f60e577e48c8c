"""Vet the candidate files before anything goes live, and hold back the customers at fault.

Two kinds of check, cheapest first:

1. per changed customer, pure (``render/readback.py``): each vassal parsed back as
   uWSGI reads it must say exactly what the inventory says; runtime paths stay
   in the customer's directories; the server blocks name exactly its domains (HTTP and HTTPS servers together);
2. ``nginx -t`` on the whole candidate set (every server block as it will be
   after apply, plus files hostctl did not write) in a scaffold: one call,
   ~5 ms plus ~0.7 ms per block. Only when it fails are the changed customers'
   blocks checked alone, by bisection (``quarantine.find_culprits``), and the set
   is checked again without the culprits. If it still fails (customers that
   clash only together), the remaining changed customers are admitted group by
   group onto the last-known-good set while it passes (``quarantine.admit``);
   if even the last-known-good set fails, nothing is written.

The result is the plan restricted to the good customers plus one ``Rejection``
per held-back customer, naming the file and nginx's or the parser's reason.
"""

from __future__ import annotations

import os
from typing import Callable, Mapping, Sequence

from hostctl.engine import nginx
from hostctl.engine.nginx import CheckResult
from hostctl.engine.pipeline import Prepared
from hostctl.errors import HostctlError
from hostctl.plan import quarantine
from hostctl.plan.diff import Plan
from hostctl.plan.manifest import Manifest
from hostctl.plan.quarantine import Rejection
from hostctl.render import layout, readback

Check = Callable[[Mapping[str, str]], CheckResult]


def rendered_problems(prepared: Prepared, customers: Sequence[str]) -> list[Rejection]:
    """Check 1: the pure per-customer read-back of ``customers``' rendered files."""
    inv, desired = prepared.inventory, prepared.desired
    settings = inv.settings
    wanted = set(customers)
    out = []
    for customer in inv.customers:
        if customer.name not in wanted:
            continue
        user = customer.user if prepared.owners.identity.per_customer else None
        for app in customer.apps:
            cfg = app.config
            paths = layout.app_paths(settings, customer.name, app.name)
            found: list[tuple[str, str]] = []
            vassal = desired.get(paths.vassal)
            if vassal is not None:
                found += [(paths.vassal, why) for why in readback.vassal_problems(vassal.content, readback.intended(cfg, paths, user))]
            server = desired.get(paths.server_block)
            names = sorted(set(readback.server_names(server.content))) if server is not None else []
            if server is not None and names != sorted(set(cfg.domains)):
                found.append((paths.server_block, f"server_name reads back as {names!r}, expected {sorted(set(cfg.domains))!r}"))
            found += [(paths.vassal, why) for why in readback.path_problems(cfg, paths, settings.run_dir, settings.log_dir)]
            out += [Rejection(customer.name, path, why) for path, why in found]
    return out


def foreign_blocks(prepared: Prepared) -> dict[str, str]:
    """Server blocks in nginx_dir that hostctl did not write (nginx loads them too), and the live
    blocks of customers held back by a broken inventory file (they stay exactly as they are)."""
    settings = prepared.inventory.settings
    held = prepared.inventory.held
    managed = {p for p, e in prepared.plan.manifest.files.items() if e.customer not in held} | set(prepared.desired)
    managed |= {c.path for c in prepared.plan.changes}
    out = {}
    try:
        entries = list(os.scandir(settings.nginx_dir))
    except FileNotFoundError:
        return out
    for entry in entries:
        if entry.name.endswith(".conf") and entry.path not in managed and entry.is_file():
            with open(entry.path, encoding="utf-8", errors="replace") as fh:
                out[entry.name] = fh.read()
    return out


def candidate(prepared: Prepared, held: set[str], foreign: Mapping[str, str]) -> dict[str, str]:
    """Every server block as it will be live when ``held`` customers keep their current files."""
    changes = {c.path: c for c in prepared.plan.changes}
    blocks = dict(foreign)
    for path, want in prepared.desired.items():
        if want.kind != "nginx":
            continue
        change = changes.get(path)
        if want.customer in held and change is not None:
            if change.before is not None:
                blocks[os.path.basename(path)] = change.before
        else:
            blocks[os.path.basename(path)] = want.content
    return blocks


def _first_error(output: str) -> str:
    for line in output.splitlines():
        if "[emerg]" in line or "[crit]" in line or "[alert]" in line:
            return line.split("] ", 1)[-1].split(": ", 1)[-1] if "#" in line else line
    return output.strip().splitlines()[0] if output.strip() else "nginx -t failed"


def nginx_problems(prepared: Prepared, held: set[str], check: Check) -> list[Rejection]:
    """Check 2: ``nginx -t`` on the candidate set; find the culprits only when it fails."""
    foreign = foreign_blocks(prepared)
    first = check(candidate(prepared, held, foreign))
    if first.ok:
        return []
    if "Too many open files" in first.output:  # the machine's limit, not a customer's fault
        raise HostctlError("nginx -t ran out of file descriptors (two log files per app); raise the open-files "
                           f"limit (ulimit -n, LimitNOFILE=) and apply again; nothing was written:\n{first.output}")
    nginx_customers = sorted({c.customer for c in prepared.plan.changes
                              if c.kind == "nginx" and c.action != "delete" and c.customer not in held})
    own: dict[str, dict[str, str]] = {}
    for path, want in prepared.desired.items():
        if want.kind == "nginx" and want.customer in nginx_customers:
            own.setdefault(want.customer, {})[os.path.basename(path)] = want.content
    results: dict[str, CheckResult] = {}

    def passes(group: Sequence[str]) -> bool:
        result = check({name: text for customer in group for name, text in own[customer].items()})
        if len(group) == 1:
            results[group[0]] = result
        return result.ok

    culprits = quarantine.find_culprits(nginx_customers, passes)
    rejections = [Rejection(c, _server_blocks(prepared, c), f"nginx -t: {_first_error(results[c].output)}") for c in culprits]
    held = held | set(culprits)
    again = check(candidate(prepared, held, foreign))
    if again.ok:
        return rejections
    rest = [c for c in nginx_customers if c not in held]
    last = check(candidate(prepared, held | set(rest), foreign))
    if not last.ok:
        raise HostctlError("nginx -t fails even with every customer's last-known-good server blocks "
                           f"(a file hostctl did not write, or a hand edit?); nothing was written:\n{last.output}")
    _admitted, refused = quarantine.admit(
        rest, lambda group: check(candidate(prepared, held | (set(rest) - set(group)), foreign)).ok)
    reason = f"nginx -t fails with this customer's new server blocks among the others: {_first_error(again.output)}"
    return rejections + [Rejection(c, _server_blocks(prepared, c), reason) for c in refused]


def _server_blocks(prepared: Prepared, customer: str) -> str:
    return ", ".join(sorted(p for p, f in prepared.desired.items() if f.customer == customer and f.kind == "nginx"))


def vet(prepared: Prepared, old: Manifest, check: Check | None = None, readback: bool = True) -> tuple[Plan, list[Rejection]]:
    """The plan restricted to customers whose output passed, and why the others were held back."""
    settings = prepared.inventory.settings
    check = check or (lambda blocks: nginx.check(settings, prepared.env, blocks))
    rejections = rendered_problems(prepared, quarantine.changed_customers(prepared.plan)) if readback else []
    held = {r.customer for r in rejections}
    if any(c.kind == "nginx" and c.customer not in held for c in prepared.plan.changes):
        rejections += nginx_problems(prepared, held, check)
        held |= {r.customer for r in rejections}
    return quarantine.restrict(prepared.plan, old, held), rejections
