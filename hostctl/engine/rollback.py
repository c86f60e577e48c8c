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

from hostctl.engine import apply as apply_mod, history, owners as identity, pipeline
from hostctl.inventory import loader as inventory
from hostctl.render import templates
from hostctl.engine.core import apply as engine_apply, history as engine_history
from hostctl.engine.core.job import Job
from hostctl.errors import InventoryError, from_engine
from hostctl.engine.history import Generation
from hostctl.inventory.schema import Settings
from hostctl.plan.files import RenderedFile


def choose(generations: list[Generation], customer: str | None) -> tuple[Generation, dict[str, int], int, str]:
    """Pure: the generation to restore from, and the new generation's origin, base and note (the engine decides)."""
    with from_engine():
        return engine_history.choose(generations, customer)


def desired_files(settings: Settings, live: Generation, target: Generation, customer: str | None) -> dict[str, RenderedFile]:
    """The files to make live: all of ``target``'s, or ``live``'s with ``customer``'s taken from ``target``."""
    with from_engine():
        return engine_history.desired_files(settings.state_dir, live, target, customer)


def job(settings: Settings, env, groups: dict[str, str], lock_timeout: float) -> Job:
    """The engine job a rollback runs with: this server's paths and nginx; the engine plans the files itself."""
    return Job(apply_mod.paths(settings), apply_mod.nginx_of(settings, env), settings.nginx.listen,
               emperor_freq=settings.emperor.freq, lock_timeout=lock_timeout, vassal_groups=groups)


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
    groups = {c.name: c.user for c in inv.customers} if owners.identity.per_customer else {}
    with from_engine():
        done, number = engine_apply.rollback(job(settings, templates.environment(inv.root), groups, lock_timeout), customer, say)
    result = apply_mod.ApplyResult(done.plan, done.messages + done.notes, owners, None, done.rejections)
    return result, history.load(settings, number), history.path(settings, number)
