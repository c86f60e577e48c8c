"""`hostctl serve`: a real uWSGI Emperor and a real nginx in the foreground.

For trying hostctl out and for the integration tests. Both run on the
inventory's directories with configs rendered into ``run_dir/serve``; Ctrl-C
(SIGINT) or SIGTERM stops both and waits until every process is gone.
In production the Emperor runs under systemd instead (see `hostctl init`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from typing import Callable

import jinja2

from hostctl.engine import emperor, logrotate, nginx
from hostctl.engine.owners import DEFAULT_NGINX_USER, Owners
from hostctl.errors import HostctlError
from hostctl.inventory.spec import Inventory
from hostctl.render import layout, templates

EMPEROR_TEMPLATE = "emperor.ini.j2"
STOP_TIMEOUT = 15.0


def emperor_config(inv: Inventory, env: jinja2.Environment, *, pidfile: str | None, logto: str | None) -> str:
    return templates.render(templates.get(env, EMPEROR_TEMPLATE), settings=inv.settings,
                            emperor_stats=layout.emperor_stats(inv.settings), pidfile=pidfile, logto=logto)


def write_configs(inv: Inventory, owners: Owners, env: jinja2.Environment) -> tuple[str, str]:
    """Render the Emperor's ini and nginx's main config into run_dir/serve; return their paths."""
    settings = inv.settings
    sdir = layout.serve_dir(settings)
    for path in (settings.emperor_dir, settings.nginx_dir, settings.run_dir, settings.log_dir, os.path.join(sdir, "tmp")):
        os.makedirs(path, exist_ok=True)
    os.chmod(settings.run_dir, 0o755)
    emperor_ini = os.path.join(sdir, "emperor.ini")
    with open(emperor_ini, "w", encoding="utf-8") as fh:
        fh.write(emperor_config(inv, env, pidfile=os.path.join(sdir, "emperor.pid"),
                                logto=os.path.join(settings.log_dir, "emperor.log")))
    user = group = None
    if owners.root:
        user, group = DEFAULT_NGINX_USER, owners.identity.nginx_group or DEFAULT_NGINX_USER
        blocked = blocked_ancestor(os.path.join(settings.run_dir, "x"), owners.nginx_gid)
        if blocked:
            raise HostctlError(f"nginx's workers ({user}) cannot reach the sockets in {settings.run_dir}: "
                               f"{blocked} is not searchable by them (chmod o+x it, or move run_dir)")
    conf = os.path.join(sdir, "nginx.conf")
    with open(conf, "w", encoding="utf-8") as fh:
        # With any app on TLS, a default HTTPS server refuses handshakes for unknown names.
        fh.write(nginx.scaffold(settings, env, sdir, os.path.join(settings.nginx_dir, "*.conf"), user=user, group=group,
                                https=any(app.config.tls for app in inv.apps())))
    return emperor_ini, conf


def blocked_ancestor(path: str, gid: int) -> str | None:
    """The first directory above ``path`` that a user in group ``gid`` (and not its owner) cannot enter."""
    current = os.path.dirname(os.path.abspath(path))
    while True:
        st = os.stat(current)
        if not (st.st_mode & 0o001 or (st.st_gid == gid and st.st_mode & 0o010)):
            return current
        parent = os.path.dirname(current)
        if parent == current:
            return None
        current = parent


def _stop(proc: subprocess.Popen, sig: int) -> None:
    if proc.poll() is None:
        try:
            os.kill(proc.pid, sig)
        except ProcessLookupError:
            pass


def run(inv: Inventory, owners: Owners, say: Callable[[str], None], ready_timeout: float = 20.0) -> int:
    settings = inv.settings
    env = templates.environment(inv.root)
    emperor_ini, conf = write_configs(inv, owners, env)
    sdir = layout.serve_dir(settings)
    nginx_argv = [settings.nginx.binary, "-p", sdir, "-c", conf, "-e", os.path.join(settings.log_dir, "nginx.error.log")]
    check = subprocess.run(nginx_argv + ["-t", "-q"], capture_output=True, text=True)
    if check.returncode != 0:
        raise HostctlError(f"nginx -t failed for {conf}:\n{(check.stdout + check.stderr).strip()}")
    if nginx.serve_pid(settings):
        raise HostctlError(f"`hostctl serve` already runs for this inventory (nginx pid file in {sdir})")

    stopping = False

    def on_signal(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    procs: list[subprocess.Popen] = []
    try:
        try:
            emperor_proc = subprocess.Popen([settings.emperor.binary, "--ini", emperor_ini], start_new_session=True,
                                            stdin=subprocess.DEVNULL)
        except FileNotFoundError:
            raise HostctlError(f"{settings.emperor.binary!r} was not found; install uwsgi-core and uwsgi-plugin-python3") from None
        procs.append(emperor_proc)
        nginx_proc = subprocess.Popen(nginx_argv, start_new_session=True, stdin=subprocess.DEVNULL)
        procs.append(nginx_proc)
        if not _wait_ready(inv, procs, ready_timeout):
            say("serve: the Emperor or nginx did not come up; see the logs in " + settings.log_dir)
            return 1
        say(f"serving {len(inv.apps())} app(s) on http://{settings.nginx.listen}/ "
            f"(Emperor pid {emperor_proc.pid}, nginx pid {nginx_proc.pid}; logs in {settings.log_dir}). Ctrl-C stops.")
        next_rotation, rotation_said = time.monotonic(), set()
        while not stopping:
            if any(p.poll() is not None for p in procs):
                say("serve: a server exited unexpectedly; stopping; see the logs in " + settings.log_dir)
                return 1
            if time.monotonic() >= next_rotation:
                next_rotation = time.monotonic() + settings.logs.check_interval
                rotate_logs(inv, env, owners.root, say, rotation_said)
            time.sleep(0.2)
        say("serve: stopping")
        return 0
    finally:
        _shutdown(procs)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def rotate_logs(inv: Inventory, env: jinja2.Environment, as_root: bool, say: Callable[[str], None],
                said: set[str]) -> None:
    """One logrotate run over the logs of this serve (logs.check_interval apart). A failure is said, not
    fatal, and only once while it lasts (``said``: what the previous run said)."""
    try:
        messages = logrotate.run(inv.settings, env, serve=True, as_root=as_root)
    except HostctlError as exc:
        messages = [f"log rotation: {exc}"]
    for message in messages:
        if message not in said:
            say("serve: " + message)
    said.clear()
    said.update(messages)


def _wait_ready(inv: Inventory, procs: list[subprocess.Popen], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    stats = layout.emperor_stats(inv.settings)
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            return False
        if nginx.serve_pid(inv.settings) and emperor.poke(stats, timeout=0.5):
            return True
        time.sleep(0.05)
    return False


def _bury_emperor(proc: subprocess.Popen, grace: float = 0.5) -> None:
    """Once every vassal is gone, stop waiting for the Emperor's own ~1 s-per-vassal bookkeeping."""
    import psutil

    deadline = time.monotonic() + STOP_TIMEOUT
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            alive = [c for c in psutil.Process(proc.pid).children(recursive=True) if c.status() != psutil.STATUS_ZOMBIE]
        except psutil.NoSuchProcess:
            return
        if not alive:
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                proc.kill()
            return
        time.sleep(0.02)


def _shutdown(procs: list[subprocess.Popen]) -> None:
    """SIGINT to the Emperor's process group, SIGQUIT to nginx (graceful); then wait, then kill.

    The vassals share the Emperor's process group, so they all stop at once instead of
    one by one at the Emperor's pace (about a second each).
    """
    signals = [signal.SIGINT, signal.SIGQUIT]
    for proc, sig in zip(procs, signals):
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                pass
    if procs:
        _bury_emperor(procs[0])
    deadline = time.monotonic() + STOP_TIMEOUT
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
