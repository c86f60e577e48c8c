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

from hostctl.inventory import loader as inventory
from hostctl.render import layout, listens, templates
from hostctl.targets import shipping
from hostctl.inventory.schema import Settings
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
    "hostctl-restore.service": "hostctl-restore.service.j2",
    "nginx-hostctl.conf": "nginx-include.conf.j2",
}
# The units run hostctl from here: the production install (README "Running it in production")
# makes /opt/hostctl a virtualenv and links its hostctl here, so an upgrade never edits a unit.
PRODUCTION_BIN = "/usr/local/bin/hostctl"
SYSTEM_DIR = "system"
# What hostctl writes beside the customer files when the inventory's paths are relative
# (the local try-out); secrets live there (vassals hold env values, certs hold keys).
GITIGNORE = """\
# Written by hostctl when it runs this inventory (`apply`, `serve`): not configuration,
# and the vassals (env values) and certs (private keys) hold secrets.
/vassals/
/nginx/
/run/
/log/
/state/
/certs/
/acme-challenge/
"""


def render_system_files(root: Path, hostctl_bin: str = PRODUCTION_BIN) -> dict[str, str]:
    """The production system files for the inventory at ``root``: {file name: content}.

    Only hostctl.yaml is read, so a broken customer file never stops it."""
    inv = inventory.load_settings(root)
    env = templates.environment(inv.root)
    return {**system_files(inv.settings, env, inventory_root=str(inv.root), hostctl_bin=hostctl_bin),
            **unit_files(UNIT_FILES, inv.settings, env, inv.root, hostctl_bin)}


# One template per unit; each runs `hostctl -i <inventory> ...` from PRODUCTION_BIN.
UNIT_FILES = {
    "hostctl-certs.service": "hostctl-certs.service.j2",
    "hostctl-certs.timer": "hostctl-certs.timer.j2",
    "hostctl-logrotate.service": "hostctl-logrotate.service.j2",
    "hostctl-logrotate.timer": "hostctl-logrotate.timer.j2",
}

def unit_files(names: dict[str, str], settings: Settings, env: jinja2.Environment, inventory_root: Path | None,
               hostctl_bin: str = PRODUCTION_BIN, **extra: object) -> dict[str, str]:
    context = dict(settings=settings, inventory=inventory_root, inventory_root=inventory_root, hostctl_bin=hostctl_bin,
                   logrotate_conf=None)
    context.update(extra)
    return {name: templates.render(templates.get(env, template), **context) for name, template in names.items()}


def restore_command(settings: Settings, hostctl_bin: str | None = None) -> str:
    """What the boot-time unit runs: the engine's ``restore`` on this host's ``state_dir``.

    On a server reached by deploy (``hostctl_bin`` None) it is the engine zip the last
    deploy left there, run by the system's python3; where hostctl is installed, `hostctl restore`.
    """
    if hostctl_bin is None:
        return f"{shipping.PYTHON} {shipping.installed_path(settings.state_dir)} restore --state-dir {settings.state_dir}"
    return f"{hostctl_bin} restore --state-dir {settings.state_dir}"


def system_files(settings: Settings, env: jinja2.Environment, emperor_ini: str = "/etc/hostctl/emperor.ini",
                 inventory_root: str | None = None, hostctl_bin: str = PRODUCTION_BIN) -> dict[str, str]:
    """The system files for ``settings`` (one host's, for multi-host bootstrap): {file name: content}.

    The Emperor's unit wants hostctl-restore.service, which recreates the customers' runtime
    directories, cgroups and limits at boot from the runtime record. ``inventory_root``: the
    inventory lives on this host (hostctl is installed here), so that unit runs `hostctl restore`;
    else the engine zip a deploy left in ``state_dir``.
    """
    context = dict(settings=settings, emperor_stats=layout.emperor_stats(settings),
                   http_listens=listens.http(settings), https_listens=listens.https(settings),
                   pidfile=None, logto=None, emperor_ini=emperor_ini, inventory=inventory_root,
                   hostctl_bin=hostctl_bin,
                   restore_command=restore_command(settings, hostctl_bin if inventory_root else None))
    return {name: templates.render(templates.get(env, template), **context) for name, template in SYSTEM_FILES.items()}


def running_bin() -> str:
    """The hostctl executable of this Python environment."""
    return os.path.join(sys.prefix, "bin", "hostctl")


def stable_path_note(hostctl_bin: str = PRODUCTION_BIN, running: str | None = None) -> str | None:
    """Say so when the units' hostctl is not the one running now (missing, or another install)."""
    running = running or running_bin()
    if not os.path.exists(hostctl_bin):
        return (f"note: the systemd units run {hostctl_bin}, which does not exist here; install hostctl as the README's "
                f"'Running it in production' says (this hostctl is {running})")
    if os.path.realpath(hostctl_bin) != os.path.realpath(running):
        return (f"note: the systemd units run {hostctl_bin} ({os.path.realpath(hostctl_bin)}), "
                f"not this hostctl ({running})")
    return None


def init(root: Path, production: bool) -> list[Path]:
    settings = root / inventory.SETTINGS_FILE
    if settings.exists():
        raise HostctlError(f"{settings} already exists; not overwriting an inventory "
                           f"(`hostctl -i {root} init --refresh` renders {SYSTEM_DIR}/ again)")
    (root / inventory.CUSTOMERS_DIR).mkdir(parents=True, exist_ok=True)
    settings.write_text(PRODUCTION_SETTINGS if production else LOCAL_SETTINGS, encoding="utf-8")
    (root / inventory.CUSTOMERS_DIR / ".gitkeep").touch()
    (root / ".gitignore").write_text(GITIGNORE, encoding="utf-8")
    created = [settings, root / inventory.CUSTOMERS_DIR, root / ".gitignore"]
    system = root / SYSTEM_DIR
    system.mkdir(exist_ok=True)
    for name, content in render_system_files(root).items():
        (system / name).write_text(content, encoding="utf-8")
        created.append(system / name)
    return created


def refresh(root: Path) -> list[tuple[Path, str]]:
    """Render system/ again (after a change to hostctl.yaml or an upgrade); write what changed.

    Returns (path, unified diff) for every file that was created or changed; the operator
    then installs those (the README says where each goes)."""
    import difflib

    if not (root / inventory.SETTINGS_FILE).exists():
        raise HostctlError(f"{root / inventory.SETTINGS_FILE} does not exist; create the inventory with `hostctl init`")
    system = root / SYSTEM_DIR
    system.mkdir(exist_ok=True)
    changed = []
    targets = {system / name: content for name, content in render_system_files(root).items()}
    if not (root / ".gitignore").exists():
        targets[root / ".gitignore"] = GITIGNORE
    for path, content in targets.items():
        old = path.read_text(encoding="utf-8") if path.exists() else ""
        if old == content:
            continue
        rel = os.path.relpath(path, root)
        diff = "".join(difflib.unified_diff(old.splitlines(True), content.splitlines(True),
                                            "/dev/null" if not path.exists() else f"a/{rel}", f"b/{rel}"))
        path.write_text(content, encoding="utf-8")
        changed.append((path, diff))
    return changed
