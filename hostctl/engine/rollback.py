"""`hostctl rollback [CUSTOMER]`: put a previously applied generation back live.

Without a customer, every managed file goes back to the generation before the
one that is live (and again, one further, on the next rollback). With a
customer, only that customer's files go back to the newest older generation in
which they differed; everyone else stays as they are. The files go live through
the same ``apply.execute`` as an apply (lock, vetting with ``nginx -t``,
atomic writes, Emperor poke, nginx reload), and the result is recorded as a new
generation. The inventory is not changed: the next apply re-applies it, so fix
the inventory (the generation keeps a snapshot of it) before applying again.
"""

from __future__ import annotations

import dataclasses

from pathlib import Path

from hostctl.engine import apply as apply_mod, history, lock, owners as identity, pipeline, state
from hostctl.engine.history import Generation
from hostctl.engine.pipeline import Prepared
from hostctl.engine.safeapply import Provenance
from hostctl.errors import HostctlError, InventoryError
from hostctl.inventory import loader as inventory
from hostctl.plan.diff import make_plan
from hostctl.plan.files import RenderedFile
from hostctl.render import layout, templates


def choose(generations: list[Generation], customer: str | None) -> tuple[Generation, dict[str, int], int, str]:
    """Pure: the generation to restore from, and the new generation's origin, base and note.

    ``generations`` are ordered oldest first; the last one is live.
    """
    if not generations:
        raise HostctlError("nothing has been applied yet; there is no generation to roll back to")
    live = generations[-1]
    if customer is None:
        older = [g for g in generations if g.number < live.base]
        if not older:
            raise HostctlError(f"generation {live.base} is the oldest kept; there is nothing earlier to roll back to")
        target = older[-1]
        return target, {c: target.number for c in {f.customer for f in target.files.values()}}, target.number, f"rollback to generation {target.number}"
    current = _shape(live, customer)
    start = live.origin.get(customer, live.number)
    for gen in reversed(generations):
        if gen.number < start and _shape(gen, customer) != current:
            origin = dict(live.origin)
            origin[customer] = gen.number
            return gen, origin, live.base, f"rollback of {customer} to generation {gen.number}"
    raise HostctlError(f"no kept generation has other files for customer {customer!r} than the live ones")


def _shape(gen: Generation, customer: str) -> dict[str, str]:
    return {p: f.sha256 for p, f in gen.customer_files(customer).items()}


def desired_files(settings, live: Generation, target: Generation, customer: str | None) -> dict[str, RenderedFile]:
    """The files to make live: all of ``target``'s, or ``live``'s with ``customer``'s taken from ``target``."""
    if customer is None:
        chosen = dict(target.files)
    else:
        chosen = {p: f for p, f in live.files.items() if f.customer != customer}
        chosen.update(target.customer_files(customer))
    out = {}
    for path, rec in chosen.items():
        text = history.blob(settings, rec.sha256)
        if text is None:
            raise HostctlError(f"the stored content of {path} (generation {target.number}) is missing; cannot roll back")
        out[path] = RenderedFile(path, text, rec.kind, rec.customer, rec.app, rec.mode)
    return out


def rollback(root: Path | str, customer: str | None, lock_timeout: float, say=lambda _: None) -> tuple[apply_mod.ApplyResult, Generation, str]:
    try:
        inv, owners = pipeline.load_checked(root, host_checks=False)
    except InventoryError as exc:  # a broken customer file must not stop a rollback: settings suffice
        inv = inventory.load_settings(root)
        owners, problems = identity.resolve(inv)
        if problems or owners.identity.per_customer:  # vassal files need each customer's group
            raise exc
        say(f"note: the inventory has problems; rolling back with hostctl.yaml's settings only:\n{exc.message}")
    if inv.held:  # a rollback writes the generation's files, the held-back customers' included
        unknown = sorted(c for c in inv.held if c not in owners.customers)
        if unknown and owners.identity.per_customer:  # their vassals need the customer's group
            raise HostctlError(f"cannot roll back while the Unix user of {', '.join(unknown)} is unknown (its customer file is broken); fix it first")
        say("note: rolling back customers whose inventory file is broken too: " + ", ".join(sorted(inv.held)))
        inv = dataclasses.replace(inv, held={})
    settings = inv.settings
    with lock.exclusive(layout.lock(settings), lock_timeout, say):
        generations = [history.load(settings, n) for n in history.numbers(settings)]
        target, origin, base, note = choose(generations, customer)
        desired = desired_files(settings, generations[-1], target, customer)
        actual = state.read(layout.manifest(settings), desired)
        plan = make_plan(desired, actual)
        prepared = Prepared(inv, owners, templates.environment(inv.root), desired, plan)
        snapshot = target.inventory if customer is None else generations[-1].inventory
        provenance = Provenance("rollback", note, base, origin, snapshot, readback=False, probe=False)
        return apply_mod.execute(prepared, say, provenance), target, history.path(settings, target.number)
