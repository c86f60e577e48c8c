"""Checks against the machine the apps run on (they read files; validation does not).

A customer virtualenv must come from the same Python that the uWSGI Python
plugin embeds (Debian's /usr/bin/python3): a virtualenv made by another Python
fails inside uWSGI in confusing ways ("No module named 'math'",
"no python application found"). ``pyvenv.cfg`` names the Python that made it.
"""

from __future__ import annotations

import os

from hostctl.errors import Problem
from hostctl.inventory import values
from hostctl.inventory.spec import Inventory


def read_pyvenv_cfg(virtualenv: str) -> dict[str, str] | None:
    try:
        with open(os.path.join(virtualenv, "pyvenv.cfg"), encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except OSError:
        return None
    out = {}
    for line in lines:
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip()] = value.strip()
    return out


def virtualenv_problem(virtualenv: str, python: str) -> str | None:
    """Why ``virtualenv`` cannot be used with a plugin embedding ``python``, or None."""
    if not os.path.isdir(virtualenv):
        return f"{virtualenv!r} does not exist"
    cfg = read_pyvenv_cfg(virtualenv)
    if cfg is None or "home" not in cfg:
        return f"{virtualenv!r} is not a virtualenv (no pyvenv.cfg with 'home')"
    expected = os.path.dirname(os.path.realpath(python))
    home = os.path.realpath(cfg["home"])
    if home != expected and os.path.realpath(os.path.join(cfg["home"], os.path.basename(python))) != os.path.realpath(python):
        made_with = cfg.get("executable") or cfg["home"]
        return (f"{virtualenv!r} was made with the Python in {made_with!r}, but uWSGI's Python plugin embeds {python}; "
                f"recreate it with `{python} -m venv {virtualenv}`")
    return None


def check_host(inventory: Inventory) -> list[Problem]:
    problems = []
    python = inventory.settings.emperor.python
    for customer in inventory.customers:
        for app in customer.apps:
            cfg = app.config
            base = ("apps", app.name)
            if cfg.virtualenv:
                why = virtualenv_problem(cfg.virtualenv, python)
                if why:
                    problems.append(inventory.problem(customer.file, base + ("virtualenv",), why))
            if cfg.chdir and not os.path.isdir(cfg.chdir):
                problems.append(inventory.problem(customer.file, base + ("chdir",), f"{cfg.chdir!r} does not exist"))
            entry = values.wsgi_file(cfg.wsgi)
            if entry and not os.path.isfile(entry[0]):
                problems.append(inventory.problem(customer.file, base + ("wsgi",), f"{entry[0]!r} does not exist"))
    return problems
