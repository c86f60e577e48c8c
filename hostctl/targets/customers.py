"""Add and remove customer files from the command line.

The CLI only ever creates or deletes ``customers/NAME.yaml`` for the customer
it is told about, so hand edits to other customers' files are never touched.
A new file is validated together with the whole inventory before it is
written, so a bad value or a domain already in use writes nothing.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import yaml

from hostctl.engine import checks, fsops
from hostctl.errors import HostctlError, InventoryError
from hostctl.inventory import loader as inventory, values


def customer_file(root: Path, name: str) -> Path:
    return root / inventory.CUSTOMERS_DIR / f"{name}.yaml"


def build(name: str, domains: list[str], wsgi: str, *, app_name: str = "web", chdir: str | None = None,
          virtualenv: str | None = None, processes: int | None = None, threads: int | None = None,
          static: dict[str, str] | None = None, memory: str | None = None, cpu: float | None = None,
          pids: int | None = None, env: dict[str, str] | None = None) -> str:
    """The YAML text of a new customer with one app (``web`` unless ``app_name`` says otherwise)."""
    app: dict[str, object] = {"domains": list(domains), "wsgi": wsgi}
    for key, value in (("chdir", chdir), ("virtualenv", virtualenv), ("processes", processes), ("threads", threads)):
        if value is not None:
            app[key] = value
    if static:
        app["static"] = dict(static)
    if env:
        app["env"] = dict(env)
    data: dict[str, object] = {}
    limits = {key: value for key, value in (("memory", memory), ("cpu", cpu), ("pids", pids)) if value is not None}
    if limits:
        data["limits"] = limits
    data["apps"] = {app_name: app}
    header = f"# Customer {name}: created by `hostctl add-customer`; edit freely.\n"
    return header + yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True)


def add(root: Path, name: str, domains: list[str], wsgi: str, **options: object) -> Path:
    """Write ``customers/NAME.yaml`` once the whole inventory validates with it and its paths exist on this host."""
    try:
        values.name(name, "customer name")
    except ValueError as exc:
        raise HostctlError(str(exc)) from None
    path = customer_file(root, name)
    if path.exists():
        raise HostctlError(f"customer {name!r} already exists ({path}); edit that file instead")
    # Other customers' broken files do not stop this one (they are held back, as everywhere).
    current = inventory.load(root, partial=True)
    for domain in domains:
        for app in current.apps():
            if domain in app.config.domains:
                raise HostctlError(f"domain {domain!r} is already used by customer {app.customer!r} (app {app.name!r})")
    text = build(name, domains, wsgi, **options)  # type: ignore[arg-type]
    rel = f"{inventory.CUSTOMERS_DIR}/{name}.yaml"
    try:
        candidate = inventory.load(root, overlay={rel: text.encode()}, partial=True)
    except InventoryError as exc:
        raise HostctlError(f"customer {name!r} was not added:\n" + "\n".join(f"  {p}" for p in exc.problems)) from None
    # A chdir, wsgi file or virtualenv that is missing here would hold the customer back at the next plan.
    problems = list(candidate.held.get(name, ()))
    if not problems:
        problems = checks.check_host(dataclasses.replace(candidate, customers=(candidate.customer(name),)))
    if problems:
        raise HostctlError(f"customer {name!r} was not added:\n" + "\n".join(f"  {p}" for p in problems))
    os.makedirs(path.parent, exist_ok=True)
    fsops.write_atomic(str(path), text.encode(), 0o600)  # may hold env values: root only, from creation on
    return path


def remove(root: Path, name: str) -> Path:
    path = customer_file(root, name)
    if not path.is_file():
        raise HostctlError(f"customer {name!r} does not exist (no {path})")
    path.unlink()
    return path


def purge_target(root: Path, name: str) -> tuple[str, str | None]:
    """Customer ``name``'s Unix user and, in a multi-host inventory, its host; read before its file goes."""
    inv = inventory.load(root, partial=True)
    spec = inv.customer(name)
    if spec is None:
        return inv.settings.isolation.user_prefix + name, None
    return spec.user, spec.host


HOST_PURGES = "purge-hosts.json"


def request_purge(root: Path, name: str, user: str, host: str | None = None) -> None:
    """Record that the next apply removes ``name``'s user and directories (``engine/core/stopping.py``).

    In a multi-host inventory (``host`` given) the record stays here, in this machine's ``state_dir``, until a
    deploy has handed it to the engine on that host (``host_purges``), which keeps it there until it is done."""
    from hostctl.engine.core import stopping

    settings = inventory.load_settings(root).settings
    if host is None:
        purges = stopping.read_purges(settings.state_dir)
        purges[name] = user
        stopping.save_purges(settings.state_dir, purges)
        return
    pending = host_purges(settings.state_dir)
    pending[name] = (host, user)
    save_host_purges(settings.state_dir, pending)


def host_purges(state_dir: str) -> dict[str, tuple[str, str]]:
    """customer -> (its host, its Unix user): purges a deploy has still to hand to their hosts."""
    try:
        with open(os.path.join(state_dir, HOST_PURGES), encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(c): (str(v[0]), str(v[1])) for c, v in data.items() if isinstance(v, list) and len(v) == 2}


def save_host_purges(state_dir: str, pending: dict[str, tuple[str, str]]) -> None:
    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    text = json.dumps({c: list(v) for c, v in sorted(pending.items())}, sort_keys=True) + "\n"
    fsops.write_atomic(os.path.join(state_dir, HOST_PURGES), text.encode(), 0o600)
