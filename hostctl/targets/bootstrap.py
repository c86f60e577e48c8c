"""`hostctl bootstrap --host NAME`: prepare a new Debian/Ubuntu server for multi-host deploys.

Renders, for one host of the inventory, the system files ``hostctl init
--production`` would (the Emperor's ini, its systemd unit, the boot-time
``hostctl-restore`` unit, the nginx include; see ``scaffold.system_files``) with
that host's paths, installs the engine zip the restore unit runs, and a script
(``templates/bootstrap.sh.j2``) that installs nginx and uWSGI with its Python 3
plugin from the distribution, creates hostctl's directories, puts the files in
place and starts the Emperor. ``build`` is pure; ``run`` sends it over SSH in
one round trip, like a deploy.
"""

from __future__ import annotations

import io
import os
import shlex
import tarfile
from dataclasses import dataclass

import jinja2

from hostctl.engine import logrotate
from hostctl.inventory import placement
from hostctl.targets import remote, scaffold, ssh
from hostctl.targets import shipping
from hostctl.render import templates
from hostctl.errors import HostctlError
from hostctl.inventory.spec import Inventory

PACKAGES = ("nginx", "uwsgi-core", "uwsgi-plugin-python3", "logrotate")
LOGROTATE_UNITS = {name: t for name, t in scaffold.UNIT_FILES.items() if name.startswith("hostctl-logrotate.")}
SCRIPT_TEMPLATE = "bootstrap.sh.j2"
STAGE = ".hostctl-bootstrap"


@dataclass(frozen=True)
class Bootstrap:
    command: str
    payload: bytes
    script: str
    files: dict[str, str]  # target path -> content


def build(inv: Inventory, name: str, env: jinja2.Environment, *, packages: bool = True, services: bool = True) -> Bootstrap:
    """What bootstrapping host ``name`` runs there. ``packages``/``services`` off: only directories and files."""
    host = inv.settings.hosts[name]
    settings = placement.host_settings(inv.settings, host)
    rendered = scaffold.system_files(settings, env, emperor_ini=host.emperor_ini)
    # Log retention without hostctl on the server: logrotate itself, on a timer (see engine/logrotate.py).
    logrotate_conf = os.path.join(os.path.dirname(host.emperor_ini), logrotate.CONFIG_NAME)
    rendered[logrotate.CONFIG_NAME] = logrotate.render(settings, env, logrotate.host_patterns(settings))
    rendered.update(scaffold.unit_files(LOGROTATE_UNITS, settings, env, None, logrotate_conf=logrotate_conf,
                                        logrotate_status=os.path.join(settings.state_dir, logrotate.STATUS_NAME)))
    rendered[shipping.NAME] = ""  # the engine (binary), added to the tar below
    targets = {
        "emperor.ini": host.emperor_ini,
        "hostctl-emperor.service": os.path.join(host.systemd_dir, "hostctl-emperor.service"),
        "hostctl-restore.service": os.path.join(host.systemd_dir, "hostctl-restore.service"),
        "nginx-hostctl.conf": host.nginx_include,
        logrotate.CONFIG_NAME: logrotate_conf,
        **{unit: os.path.join(host.systemd_dir, unit) for unit in LOGROTATE_UNITS},
        shipping.NAME: shipping.installed_path(settings.state_dir),
    }
    stage = os.path.join(settings.state_dir, STAGE)
    files = [dict(name=n, target=t, dir=os.path.dirname(t),
                  tmp=os.path.join(os.path.dirname(t), f".{os.path.basename(t)}.hostctl-tmp-bootstrap"))
             for n, t in targets.items()]
    script = templates.render(
        templates.get(remote.script_environment(env), SCRIPT_TEMPLATE),
        host=name, stage=stage, packages=packages, package_names=PACKAGES, services=services,
        dirs=[settings.emperor_dir, settings.nginx_dir, settings.run_dir, settings.log_dir],
        state_dir=settings.state_dir, files=files,
        test_command=settings.nginx.test_command, reload_command=settings.nginx.reload_command,
        default_server=settings.nginx.default_server,
    )
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for n, content in rendered.items():
            data = shipping.engine_zip()[0] if n == shipping.NAME else content.encode()
            remote.add_member(tar, os.path.join(stage, n), data, 0o600)
        remote.add_member(tar, os.path.join(stage, "bootstrap.sh"), script.encode(), 0o700)
    q = shlex.quote
    command = (f"umask 022 && mkdir -p -m 700 -- {q(settings.state_dir)} && rm -rf -- {q(stage)} && "
               f"tar -xzpmf - -C / && exec sh {q(os.path.join(stage, 'bootstrap.sh'))}")
    return Bootstrap(command, buffer.getvalue(), script, {targets[n]: c for n, c in rendered.items() if n != shipping.NAME})


def run(inv: Inventory, name: str, *, packages: bool = True, services: bool = True) -> str:
    """Bootstrap host ``name`` over SSH; return its output, raise ``HostctlError`` when it failed."""
    placement.select_hosts(inv, [name])
    boot = build(inv, name, templates.environment(inv.root), packages=packages, services=services)
    conn = ssh.connect(inv.settings.hosts[name], str(inv.root), name)
    try:
        done = ssh.execute(conn, boot.command, boot.payload, timeout=1800)
    finally:
        conn.close()
    if done.status != 0:
        raise HostctlError(f"bootstrap of host {name!r} failed (exit {done.status}):\n{(done.output + done.errors).strip()}")
    return done.output
