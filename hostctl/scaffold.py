"""`hostctl init`: a new inventory with working defaults, and the system files around it.

Besides ``hostctl.yaml`` and an empty ``customers/``, it renders into
``system/`` what production needs: the Emperor's ini, its systemd unit and the
nginx snippet that includes hostctl's server blocks (the README says where
each one goes).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import jinja2

from hostctl import inventory, layout, templates
from hostctl.model import Settings
from hostctl.errors import HostctlError

LOCAL_SETTINGS = """\
# hostctl settings. Relative paths are relative to this directory.
emperor_dir: vassals        # the uWSGI Emperor watches this directory
nginx_dir: nginx            # one server block per app
run_dir: run                # sockets, stats sockets, pid files
log_dir: log                # per-customer uWSGI and nginx logs
state_dir: state            # hostctl's manifest of the files it wrote
nginx:
  listen: "127.0.0.1:8080"
isolation:
  users: auto               # per-customer Unix users when run as root, else the invoking user
logs:                       # rotation and retention of every log hostctl creates
  max_size: 10M             # rotate a log once it is larger than this
  keep: 5                   # rotated nginx logs kept per log (uWSGI keeps one: <app>.log.1)
  check_interval: 60        # seconds between logrotate runs (hostctl-logrotate.timer, `hostctl serve`)
defaults:
  processes: 2
  limits: {memory: 256M, cpu: 1, pids: 128}
"""

PRODUCTION_SETTINGS = """\
# hostctl settings for a production server (root Emperor under systemd).
emperor_dir: /etc/hostctl/vassals
nginx_dir: /etc/hostctl/nginx
run_dir: /run/hostctl
log_dir: /var/log/hostctl
state_dir: /var/lib/hostctl
nginx:
  listen: "80"
  group: www-data           # nginx's worker group: the only one that may connect to sockets
  test_command: "nginx -t -q"
  reload_command: "systemctl reload nginx"
isolation:
  users: per-customer       # each customer's vassals run as its own Unix user
logs:                       # rotation and retention of every log hostctl creates
  max_size: 10M             # rotate a log once it is larger than this
  keep: 5                   # rotated nginx logs kept per log (uWSGI keeps one: <app>.log.1)
  check_interval: 60        # seconds between logrotate runs (hostctl-logrotate.timer, `hostctl serve`)
tls:
  https_listen: "443"
  webroot: /var/lib/hostctl-acme            # served by nginx: outside state_dir, which is 0700
  cert_dir: /etc/hostctl/certs               # ACME certificates and the ACME account key
  acme:
    # directory: https://acme-staging-v02.api.letsencrypt.org/directory   # staging, for trying it out
    email: null                              # set it: the CA mails expiry warnings there
defaults:
  processes: 2
  limits: {memory: 512M, cpu: 1, pids: 256}
"""

SYSTEM_FILES = {
    "emperor.ini": "emperor.ini.j2",
    "hostctl-emperor.service": "hostctl-emperor.service.j2",
    "nginx-hostctl.conf": "nginx-include.conf.j2",
}


def render_system_files(root: Path) -> dict[str, str]:
    """The production system files for the inventory at ``root``: {file name: content}."""
    inv = inventory.load(root)
    env = templates.environment(inv.root)
    return {**system_files(inv.settings, env, inventory_root=str(inv.root)), **certs_timer_files(inv.root, env),
            **logrotate_timer_files(inv.settings, inv.root, env)}


CERTS_TIMER_FILES = {"hostctl-certs.service": "hostctl-certs.service.j2", "hostctl-certs.timer": "hostctl-certs.timer.j2"}


def certs_timer_files(inventory_root: Path, env: jinja2.Environment, hostctl_bin: str | None = None) -> dict[str, str]:
    """The systemd service and timer that run `hostctl certs renew` for the inventory at ``inventory_root``."""
    context = dict(inventory_root=inventory_root, hostctl_bin=hostctl_bin or os.path.join(sys.prefix, "bin", "hostctl"))
    return {name: templates.render(templates.get(env, template), **context) for name, template in CERTS_TIMER_FILES.items()}


LOGROTATE_TIMER_FILES = {"hostctl-logrotate.service": "hostctl-logrotate.service.j2",
                         "hostctl-logrotate.timer": "hostctl-logrotate.timer.j2"}


def logrotate_timer_files(settings: Settings, inventory_root: Path, env: jinja2.Environment) -> dict[str, str]:
    """The systemd service and timer that run `hostctl rotate-logs` every logs.check_interval seconds."""
    context = dict(settings=settings, inventory_root=inventory_root, hostctl_bin=os.path.join(sys.prefix, "bin", "hostctl"))
    return {name: templates.render(templates.get(env, template), **context) for name, template in LOGROTATE_TIMER_FILES.items()}


def system_files(settings: Settings, env: jinja2.Environment, emperor_ini: str = "/etc/hostctl/emperor.ini",
                 inventory_root: str | None = None) -> dict[str, str]:
    """The system files for ``settings`` (one host's, for multi-host bootstrap): {file name: content}.

    ``inventory_root``: the inventory lives on this host, so the Emperor's unit
    recreates the customers' cgroups at boot (`hostctl limits --apply`).
    """
    context = dict(settings=settings, emperor_stats=layout.emperor_stats(settings),
                   pidfile=None, logto=None, emperor_ini=emperor_ini, inventory=inventory_root,
                   hostctl_bin=os.path.join(sys.prefix, "bin", "hostctl"))
    return {name: templates.render(templates.get(env, template), **context) for name, template in SYSTEM_FILES.items()}


def init(root: Path, production: bool) -> list[Path]:
    settings = root / inventory.SETTINGS_FILE
    if settings.exists():
        raise HostctlError(f"{settings} already exists; not overwriting an inventory")
    (root / inventory.CUSTOMERS_DIR).mkdir(parents=True, exist_ok=True)
    settings.write_text(PRODUCTION_SETTINGS if production else LOCAL_SETTINGS, encoding="utf-8")
    (root / inventory.CUSTOMERS_DIR / ".gitkeep").touch()
    created = [settings, root / inventory.CUSTOMERS_DIR]
    system = root / "system"
    system.mkdir(exist_ok=True)
    for name, content in render_system_files(root).items():
        (system / name).write_text(content, encoding="utf-8")
        created.append(system / name)
    return created
