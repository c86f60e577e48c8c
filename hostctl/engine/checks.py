"""Checks against the machine the apps run on (they read files; validation does not).

A customer virtualenv must come from the same Python that the uWSGI Python
plugin embeds (Debian's /usr/bin/python3): a virtualenv made by another Python
fails inside uWSGI in confusing ways ("No module named 'math'",
"no python application found"). ``pyvenv.cfg`` names the Python that made it.
"""

from __future__ import annotations

import grp
import os
import pwd
import shlex
import socket
import stat

from hostctl.errors import Problem
from hostctl.engine import boundedio, nginx
from hostctl.engine.core import nginxdump
from hostctl.engine.core.errors import EngineError
from hostctl.inventory import domains, values
from hostctl.inventory.loader import SETTINGS_FILE
from hostctl.inventory.schema import Settings
from hostctl.inventory.spec import Inventory
from hostctl.render import listens

PYVENV_CFG_MAX = 64 * boundedio.KIB  # a real one is a few hundred bytes


def read_pyvenv_cfg(virtualenv: str) -> dict[str, str] | None:
    """The virtualenv's pyvenv.cfg; None when it has none; ``boundedio.Refused`` when it is not a small regular file.

    The virtualenv is the customer's: its pyvenv.cfg may be a FIFO, /dev/zero or a symlink.
    """
    try:
        text = boundedio.read_regular(os.path.join(virtualenv, "pyvenv.cfg"), PYVENV_CFG_MAX, nofollow=True)
    except boundedio.Refused:
        raise
    except OSError:
        return None
    out = {}
    for line in text.decode("utf-8", errors="replace").splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip()] = value.strip()
    return out


def virtualenv_problem(virtualenv: str, python: str) -> str | None:
    """Why ``virtualenv`` cannot be used with a plugin embedding ``python``, or None."""
    if not os.path.isdir(virtualenv):
        return f"{virtualenv!r} does not exist"
    try:
        cfg = read_pyvenv_cfg(virtualenv)
    except boundedio.Refused as exc:
        return f"{exc.filename!r} {exc.strerror}; it is not read"
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
    problems = domain_problems(inventory, own_names(socket.gethostname(), _etc_hosts()), *live_servers(inventory.settings))
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


# --- the host's own names and the servers hostctl did not write ---------------------------


def own_names(hostname: str, etc_hosts: str) -> set[str]:
    """The host's own names: its hostname and the names /etc/hosts gives its loopback addresses."""
    names = {hostname.lower()}
    for line in etc_hosts.splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) >= 2 and (fields[0].startswith("127.") or fields[0] == "::1"):
            names.update(name.lower() for name in fields[1:])
    out = set()
    for name in names:
        try:
            values.host_name(name)
        except ValueError:
            continue
        if domains.refusal(name) is None and not name.startswith("ip6-"):
            out.add(name)
    return out


def _etc_hosts(path: str = "/etc/hosts") -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read(1 << 20)
    except OSError:
        return ""


def dump_command(settings: Settings) -> list[str] | None:
    """How to print the live nginx configuration here (a fleet's nginx lives on its hosts: the engine reads it there)."""
    return None if settings.hosts else nginx.dump_command(settings)


def live_servers(settings: Settings) -> tuple[list[nginxdump.Server], list[Problem]]:
    """The http servers of the live nginx configuration that hostctl did not write (the engine's reader)."""
    argv = dump_command(settings)
    try:
        return nginxdump.live_foreign(shlex.join(argv) if argv else None, (settings.nginx_dir,)), []
    except EngineError as exc:
        return [], [Problem(SETTINGS_FILE, None, "nginx.dump_command", exc.message.replace("; nothing was changed", ""))]


def domain_problems(inventory: Inventory, own: set[str], foreign: list[nginxdump.Server],
                    problems: list[Problem] | None = None) -> list[Problem]:
    """Customer domains that are the host's own names or collide with a server hostctl did not write."""
    out = list(problems or [])
    ours = nginxdump.hostctl_listens(listens_of(inventory.settings))
    foreign = [server for server in foreign if nginxdump.shares_listen(server.listens, ours)]
    for customer in inventory.customers:
        for app in customer.apps:
            for index, domain in enumerate(app.config.domains):
                path = ("apps", app.name, "domains", index)
                taken = domains.reserved_clash(domain, own)
                if taken:
                    what = "is" if taken == domain else f"covers {taken!r},"
                    out.append(inventory.problem(customer.file, path, f"{domain!r} {what} a name of this host (its hostname or /etc/hosts)"))
                why = nginxdump.collision(domain, ours, foreign)
                if why is not None:
                    out.append(inventory.problem(customer.file, path, why))
    return out


def listens_of(settings: Settings) -> tuple[str, ...]:
    return listens.http(settings) + listens.https(settings)


# --- can nginx's workers reach the static directories? -------------------------------------


def blocked_directory(path: str, uid: int, gids: set[int]) -> tuple[str, os.stat_result] | None:
    """The first directory from / down to ``path`` (inclusive) that a process of ``uid``/``gids`` may not
    enter, with its stat; None when every existing one is searchable (a missing one ends the walk)."""
    parts = [p for p in path.split("/") if p]
    for directory in ["/"] + ["/" + "/".join(parts[: i + 1]) for i in range(len(parts))]:
        try:
            st = os.stat(directory)
        except OSError:
            return None
        if not stat.S_ISDIR(st.st_mode):
            return None
        bit = stat.S_IXUSR if st.st_uid == uid else stat.S_IXGRP if st.st_gid in gids else stat.S_IXOTH
        if uid != 0 and not st.st_mode & bit:
            return directory, st
    return None


def static_access_problems(inventory: Inventory, nginx_user: str, nginx_gid: int) -> list[Problem]:
    """Static directories nginx's workers cannot enter: every file there would answer 403."""
    try:
        entry = pwd.getpwnam(nginx_user)
    except KeyError:
        return []
    gids = set(os.getgrouplist(nginx_user, entry.pw_gid)) | ({nginx_gid} if nginx_gid != -1 else set())
    group = _group_name(nginx_gid if nginx_gid != -1 else entry.pw_gid)
    problems = []
    for customer in inventory.customers:
        for app in customer.apps:
            for prefix, target in app.config.static.items():
                blocked = blocked_directory(target, entry.pw_uid, gids)
                if blocked is not None:
                    directory, st = blocked
                    problems.append(inventory.problem(customer.file, ("apps", app.name, "static", prefix), (
                        f"nginx's workers ({nginx_user}) cannot enter {directory!r} (mode {stat.S_IMODE(st.st_mode):04o}, "
                        f"{_user_name(st.st_uid)}:{_group_name(st.st_gid)}), so every file under {target!r} would answer 403; "
                        f"give them search permission there (chmod o+x, or group {group} with g+x)")))
    return problems


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return str(gid)
