"""Multi-host placement: which server serves which customer, and each server's view.

An inventory with ``hosts:`` in hostctl.yaml places every customer on one host
(``host:`` in its file, else ``default_host``). This module checks that
placement (unknown hosts, customers left without one) and derives, for one
host, the inventory that host serves: only its customers, with that host's
paths and nginx commands, so ``render.render`` produces exactly the files that
belong there. Pure: data in, data out.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Iterable, Mapping

from hostctl.errors import HostctlError, Problem
from hostctl.inventory.schema import Host, Settings

from hostctl.inventory.spec import CustomerSpec, Inventory
from hostctl.inventory.yamlsource import Source, parse

SETTINGS_FILE = "hostctl.yaml"
HOST_PATHS = ("emperor_dir", "nginx_dir", "run_dir", "log_dir", "state_dir")


def check(settings: Settings, customers: Iterable["CustomerSpec"], sources: Mapping[str, "Source"]) -> list[Problem]:
    """Problems with where customers are placed, each with file and line."""
    problems: list[Problem] = []
    hosts = settings.hosts
    known = ", ".join(sorted(hosts)) or "none"
    settings_source = sources.get(SETTINGS_FILE)
    if settings.default_host is not None and settings.default_host not in hosts and settings_source is not None:
        problems.append(settings_source.problem(("default_host",), f"{settings.default_host!r} is not a host in 'hosts:' (known hosts: {known})"))
    for customer in customers:
        source = sources[customer.file]
        written = isinstance(source.data, dict) and "host" in source.data
        if customer.host is None:
            if hosts:
                problems.append(source.problem((), f"customer {customer.name!r} has no host; set 'host:' (one of: {known}) "
                                                    "or 'default_host' in hostctl.yaml"))
            continue
        if customer.host not in hosts:
            if written:
                problems.append(source.problem(("host",), f"{customer.host!r} is not a host in hostctl.yaml (known hosts: {known})"))
            # a bad default_host is reported once, against hostctl.yaml
    for name in sorted(hosts) if settings_source is not None else ():
        message = isolation_problem(settings, name)
        if message is not None:
            problems.append(settings_source.problem(("hosts", name, "user"), message))
    problems += _same_server(hosts, settings_source)
    problems += _shared_ports(settings, customers, settings_source)
    return problems


def runtime_dirs(settings: Settings, host: str | None) -> tuple[str | None, str | None]:
    """The run_dir and log_dir a customer's vassals use: its host's in a multi-host inventory
    ((None, None) when that host is unknown: a placement problem reported on its own), else the settings'."""
    if not settings.hosts:
        return settings.run_dir, settings.log_dir
    found = settings.hosts.get(host) if host is not None else None
    return (found.run_dir, found.log_dir) if found is not None else (None, None)


def _same_server(hosts: Mapping[str, Host], source: "Source | None") -> list[Problem]:
    """Two hosts reaching one server (address and port): each deploy would plan that server as a whole."""
    seen: dict[tuple[str, int], str] = {}
    problems = []
    for name, host in hosts.items():
        first = seen.setdefault((host.address.lower(), host.port), name)
        if first != name and source is not None:
            problems.append(source.problem(("hosts", name, "address"), (
                f"{host.address} port {host.port} is host {first!r} too; one server must be one host "
                "(a deploy plans a server's files, users and cgroups as a whole)")))
    return problems


def _listen_port(listen: str) -> tuple[str, str]:
    """(address, port) of an nginx listen value; address '' for every address."""
    address, _, port = listen.rpartition(":")
    return ("" if address in ("", "*", "0.0.0.0", "[::]") else address.lower()), port


def _shared_ports(settings: Settings, customers: Iterable["CustomerSpec"], source: "Source | None") -> list[Problem]:
    """HTTP and HTTPS on one address and port of a host that serves TLS: nginx applies 'ssl' to the whole socket."""
    if source is None:
        return []
    https = settings.tls.https_listen
    b_addr, b_port = _listen_port(https)
    with_tls = {c.host for c in customers if any(a.config.tls is not None for a in c.apps)}
    places: list[tuple[str | None, str, tuple]] = []
    if settings.hosts:
        for name, host in settings.hosts.items():
            if name in with_tls:
                own = host.nginx.listen is not None
                places.append((name, host.nginx.listen or settings.nginx.listen,
                               ("hosts", name, "nginx", "listen") if own else ("nginx", "listen")))
    elif with_tls:
        places.append((None, settings.nginx.listen, ("nginx", "listen")))
    problems = []
    for name, listen, path in places:
        a_addr, a_port = _listen_port(listen)
        if a_port == b_port and (not a_addr or not b_addr or a_addr == b_addr):
            where = f" on host {name!r}" if name else ""
            problems.append(source.problem(path, (
                f"{listen!r} and tls.https_listen {https!r} are one port{where}; nginx would make it HTTPS for both "
                "(its HTTP visitors get an error)")))
    return problems


def host_users(settings: Settings, host: Host) -> str:
    """``isolation.users`` on ``host``: its own setting, else the inventory's."""
    return host.isolation.users or settings.isolation.users


def runs_as_root(host: Host) -> bool:
    """Do commands on ``host`` run as root: its SSH user is root, or it becomes root with sudo."""
    return host.user == "root" or host.become is not None


def isolation_problem(settings: Settings, name: str) -> str | None:
    """Why host ``name`` cannot have per-customer users although the inventory asks for them (None: it can).

    Isolation never degrades silently: a non-root SSH user without ``become`` is an error,
    unless the inventory says ``users: invoker`` (for this host, or for all).
    """
    host = settings.hosts[name]
    mode = host_users(settings, host)
    if runs_as_root(host) or mode == "invoker":
        return None
    return (f"host {name!r}: the SSH user {host.user!r} is not root and the host has no 'become: sudo', so "
            f"per-customer Unix users and cgroups cannot be had there (isolation.users: {mode}); set 'become: sudo' "
            f"for this host, or 'isolation: {{users: invoker}}' for it to run its customers as {host.user!r}")


def host_settings(settings: Settings, host: Host) -> Settings:
    """The inventory's settings with ``host``'s paths, nginx commands and ``isolation.users``."""
    nginx = settings.nginx.model_copy(update={
        "test_command": host.nginx.test_command,
        "reload_command": host.nginx.reload_command,
        "pid_file": host.nginx.pid_file,
        "listen": host.nginx.listen or settings.nginx.listen,
    })
    isolation = settings.isolation.model_copy(update={"users": host_users(settings, host)})
    tls = settings.tls.model_copy(update={"webroot": host.acme_webroot, "cert_dir": host_cert_dir(host)})
    return settings.model_copy(update={**{key: getattr(host, key) for key in HOST_PATHS}, "nginx": nginx, "isolation": isolation,
                                       "tls": tls})


def host_cert_dir(host: Host) -> str:
    """Where deploy ships certificates on ``host``: root-only, under its state directory unless set."""
    return host.cert_dir or f"{host.state_dir}/certs"


def host_inventory(inventory: "Inventory", name: str) -> "Inventory":
    """What host ``name`` serves: its customers only, rendered with its paths."""
    host = inventory.settings.hosts[name]
    customers = tuple(c for c in inventory.customers if c.host == name)
    return dataclasses.replace(inventory, settings=host_settings(inventory.settings, host), customers=customers)


def placed(inventory: "Inventory") -> dict[str, str]:
    """``{customer: host}`` for every customer of a multi-host inventory."""
    return {c.name: c.host for c in inventory.customers if c.host is not None}


def select_hosts(inventory: "Inventory", wanted: Iterable[str]) -> list[str]:
    """The hosts to act on: ``wanted`` (checked), or all hosts when it is empty."""
    hosts = inventory.settings.hosts
    chosen = list(dict.fromkeys(wanted)) or sorted(hosts)
    unknown = [name for name in chosen if name not in hosts]
    if unknown:
        raise HostctlError(f"unknown host {', '.join(map(repr, unknown))}; hosts in hostctl.yaml: {', '.join(sorted(hosts)) or 'none'}.")
    return chosen


def peek_settings(root: str) -> Settings | None:
    """hostctl.yaml alone, quickly, so SSH can start while the customers load; None when it is not valid.

    Only a head start: ``inventory.load`` reads and checks it again, with every error reported there.
    """
    try:
        with open(os.path.join(root, SETTINGS_FILE), "rb") as fh:
            source, problems = parse(fh.read(), SETTINGS_FILE)
        if source is None or problems:
            return None
        return Settings.model_validate(source.data or {})
    except (OSError, ValueError):
        return None


def refuse_multi_host(inventory: "Inventory") -> None:
    """The local commands (validate, plan, apply, serve) act on this machine's paths; a multi-host inventory is deployed."""
    if inventory.settings.hosts:
        raise HostctlError("this inventory places customers on hosts ('hosts:' in hostctl.yaml); "
                           "use `hostctl deploy` (`hostctl deploy --dry-run` shows each host's plan, `hostctl plan --host NAME "
                           "[--offline]` one host's; `hostctl validate` checks it without SSH).")
