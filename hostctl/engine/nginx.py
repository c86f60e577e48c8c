"""Check and reload nginx.

Candidate server blocks are checked with ``nginx -t`` inside a throw-away
scaffold (a minimal main config in a temporary directory) before anything goes
live. Going live is a graceful reload: of the system nginx through the
configured commands in production, or of the nginx that ``hostctl serve`` runs.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import tempfile
from dataclasses import dataclass
from typing import Mapping

import jinja2

from hostctl.engine import reload_wait
from hostctl.errors import HostctlError
from hostctl.inventory.schema import Settings
from hostctl.render import layout, templates

SCAFFOLD_TEMPLATE = "nginx.conf.j2"


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    output: str


def scaffold(settings: Settings, env: jinja2.Environment, prefix: str, include: str, *,
             user: str | None = None, group: str | None = None, default_server: bool = True,
             https_listen: str | None = None) -> str:
    """The text of a minimal nginx.conf around ``include`` (a glob of server blocks)."""
    return templates.render(
        templates.get(env, SCAFFOLD_TEMPLATE),
        settings=settings, user=user, group=group, include=include, default_server=default_server, https_listen=https_listen,
        pidfile=os.path.join(prefix, "nginx.pid"), error_log=os.path.join(prefix, "error.log"),
        temp_dir=os.path.join(prefix, "tmp"),
    )


def check(settings: Settings, env: jinja2.Environment, server_blocks: Mapping[str, str]) -> CheckResult:
    """``nginx -t`` on ``{file name: content}`` alone, in a scaffold; the live config is untouched."""
    with tempfile.TemporaryDirectory(prefix="hostctl-nginx-") as prefix:
        confd = os.path.join(prefix, "conf.d")
        os.makedirs(os.path.join(prefix, "tmp"))
        os.mkdir(confd)
        for name, content in server_blocks.items():
            with open(os.path.join(confd, name), "w", encoding="utf-8") as fh:
                fh.write(content)
        conf = os.path.join(prefix, "nginx.conf")
        with open(conf, "w", encoding="utf-8") as fh:
            fh.write(scaffold(settings, env, prefix, os.path.join(confd, "*.conf")))
        return _run([settings.nginx.binary, "-t", "-q", "-p", prefix, "-c", conf, "-e", "stderr"], prefix)


def _run(argv: list[str], scrub: str | None = None) -> CheckResult:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    except FileNotFoundError:
        raise HostctlError(f"{argv[0]!r} was not found; install nginx (apt-get install nginx)") from None
    except subprocess.TimeoutExpired:
        return CheckResult(False, f"{' '.join(argv)} did not finish within 60 s")
    output = (proc.stdout + proc.stderr).strip()
    if scrub:
        output = output.replace(scrub + "/conf.d/", "")
    return CheckResult(proc.returncode == 0, output)


def test_live(settings: Settings) -> CheckResult | None:
    """Run the configured production ``test_command``; None when there is none."""
    if not settings.nginx.test_command:
        return None
    return _run(shlex.split(settings.nginx.test_command))


def serve_pid(settings: Settings) -> int | None:
    """The pid of the nginx master that `hostctl serve` runs, when it is alive."""
    try:
        with open(os.path.join(layout.serve_dir(settings), "nginx.pid"), encoding="ascii") as fh:
            pid = int(fh.read().strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def reload(settings: Settings) -> str:
    """Reload nginx gracefully and wait until it has taken over; return what was done, raise when it failed.

    Taken over: new workers run and no old worker accepts connections any more
    (``reload_wait``), so every request after this returns sees the new server blocks.
    """
    if settings.nginx.reload_command:
        master = reload_wait.master_from(settings.nginx.pid_file)
        outcome: list[CheckResult] = []

        def send() -> None:
            outcome.append(_run(shlex.split(settings.nginx.reload_command)))
            if not outcome[0].ok:
                raise HostctlError(f"nginx reload failed ({settings.nginx.reload_command}):\n{outcome[0].output}")

        if master is None:
            send()
            return (f"nginx reloaded ({settings.nginx.reload_command}); not waiting for its old workers to stop "
                    f"accepting: no running master in {settings.nginx.pid_file}")
        done, what = reload_wait.reload_and_wait(master, send)
    else:
        pid = serve_pid(settings)
        if pid is None:
            return "nginx is not running (start it with `hostctl serve`); the new server blocks apply when it starts"
        done, what = reload_wait.reload_and_wait(pid)
    if not done:
        raise HostctlError(what)
    return what
