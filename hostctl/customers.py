"""Add and remove customer files from the command line.

The CLI only ever creates or deletes ``customers/NAME.yaml`` for the customer
it is told about, so hand edits to other customers' files are never touched.
A new file is validated together with the whole inventory before it is
written, so a bad value or a domain already in use writes nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from hostctl import fsops, inventory, values
from hostctl.errors import HostctlError, InventoryError


def customer_file(root: Path, name: str) -> Path:
    return root / inventory.CUSTOMERS_DIR / f"{name}.yaml"


def build(name: str, domains: list[str], wsgi: str, *, chdir: str | None = None, virtualenv: str | None = None,
          processes: int | None = None, memory: str | None = None, env: dict[str, str] | None = None) -> str:
    """The YAML text of a new customer with one app ``web``."""
    app: dict[str, object] = {"domains": list(domains), "wsgi": wsgi}
    if chdir:
        app["chdir"] = chdir
    if virtualenv:
        app["virtualenv"] = virtualenv
    if processes is not None:
        app["processes"] = processes
    if env:
        app["env"] = dict(env)
    data: dict[str, object] = {}
    if memory:
        data["limits"] = {"memory": memory}
    data["apps"] = {"web": app}
    header = f"# Customer {name}: created by `hostctl add-customer`; edit freely.\n"
    return header + yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True)


def add(root: Path, name: str, domains: list[str], wsgi: str, **options: object) -> Path:
    try:
        values.name(name, "customer name")
    except ValueError as exc:
        raise HostctlError(str(exc)) from None
    path = customer_file(root, name)
    if path.exists():
        raise HostctlError(f"customer {name!r} already exists ({path}); edit that file instead")
    current = inventory.load(root)
    for domain in domains:
        for app in current.apps():
            if domain in app.config.domains:
                raise HostctlError(f"domain {domain!r} is already used by customer {app.customer!r} (app {app.name!r})")
    text = build(name, domains, wsgi, **options)  # type: ignore[arg-type]
    try:
        inventory.load(root, overlay={f"{inventory.CUSTOMERS_DIR}/{name}.yaml": text.encode()})
    except InventoryError as exc:
        raise HostctlError(f"customer {name!r} was not added:\n" + "\n".join(f"  {p}" for p in exc.problems)) from None
    os.makedirs(path.parent, exist_ok=True)
    fsops.write_atomic(str(path), text.encode(), 0o644)
    return path


def remove(root: Path, name: str) -> Path:
    path = customer_file(root, name)
    if not path.is_file():
        raise HostctlError(f"customer {name!r} does not exist (no {path})")
    path.unlink()
    return path
