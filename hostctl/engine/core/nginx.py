"""nginx on this server: check candidate server blocks, run the live test, reload gracefully.

Candidates are checked with ``nginx -t`` inside a throw-away scaffold (a
minimal main config in a temporary directory; its text comes rendered from the
control side with ``PREFIX`` standing for the directory). Going live is a
graceful reload: the configured command in production, or SIGHUP to the nginx
that ``hostctl serve`` runs (then waiting until it has started new workers).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass
from typing import Mapping

from hostctl.engine.core import reload_wait
from hostctl.engine.core.errors import EngineError

PREFIX = "/HOSTCTL_SCAFFOLD_PREFIX"  # stands for the scaffold's temporary directory in the scaffold text


@dataclass(frozen=True)
class CheckResult:
    ok: bool
    output: str


@dataclass(frozen=True)
class Nginx:
    """How this server's nginx is checked and reloaded."""

    binary: str = "nginx"
    scaffold: str = ""  # nginx.conf text around PREFIX/conf.d/*.conf
    test_command: str | None = None  # production: the live config test
    reload_command: str | None = None  # production: the reload
    serve_dir: str = ""  # where `hostctl serve` keeps nginx.pid (no reload_command)
    pid_file: str | None = None  # production: the master's pid file, to wait after reload_command until it took over
    dump_command: str | None = None  # prints the live configuration (nginx -T): other servers' names (nginxdump.py)


def check(nginx: Nginx, server_blocks: Mapping[str, str]) -> CheckResult:
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
            fh.write(nginx.scaffold.replace(PREFIX, prefix))
        return run([nginx.binary, "-t", "-q", "-p", prefix, "-c", conf, "-e", "stderr"], prefix)


def run(argv: list[str], scrub: str | None = None, shell: bool = False) -> CheckResult:
    try:
        proc = subprocess.run(argv if not shell else argv[0], capture_output=True, text=True, timeout=60, shell=shell)
    except FileNotFoundError:
        raise EngineError(f"{argv[0]!r} was not found; install nginx (apt-get install nginx)") from None
    except subprocess.TimeoutExpired:
        return CheckResult(False, f"{' '.join(argv)} did not finish within 60 s")
    output = (proc.stdout + proc.stderr).strip()
    if scrub:
        output = output.replace(scrub + "/conf.d/", "")
    return CheckResult(proc.returncode == 0, output)


def _command(command: str) -> CheckResult:
    """A configured command line, run by ``/bin/sh`` (as on every host)."""
    return run([command], shell=True)


def test_live(nginx: Nginx) -> CheckResult | None:
    """Run the configured production ``test_command``; None when there is none."""
    if not nginx.test_command:
        return None
    return _command(nginx.test_command)


def serve_pid(nginx: Nginx) -> int | None:
    """The pid of the nginx master that `hostctl serve` runs, when it is alive."""
    try:
        with open(os.path.join(nginx.serve_dir, "nginx.pid"), encoding="ascii") as fh:
            pid = int(fh.read().strip())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def running(nginx: Nginx) -> bool:
    """Whether there is an nginx to probe through (production: assumed; else `hostctl serve`'s)."""
    return bool(nginx.reload_command) or serve_pid(nginx) is not None


def reload(nginx: Nginx) -> str:
    """Reload nginx gracefully and wait until it has taken over; return what was done, raise when it failed.

    Taken over: new workers run and no old worker accepts connections any more
    (``reload_wait``), so every request after this returns sees the new server blocks.
    """
    if nginx.reload_command:
        master = reload_wait.master_from(nginx.pid_file)
        command = nginx.reload_command

        def send() -> None:
            result = _command(command)
            if not result.ok:
                raise EngineError(f"nginx reload failed ({command}):\n{result.output}")

        if master is None:
            send()
            return (f"nginx reloaded ({command}); not waiting for its old workers to stop "
                    f"accepting: no running master in {nginx.pid_file}")
        done, what = reload_wait.reload_and_wait(master, send)
    else:
        pid = serve_pid(nginx)
        if pid is None:
            return "nginx is not running (start it with `hostctl serve`); the new server blocks apply when it starts"
        done, what = reload_wait.reload_and_wait(pid)
    if not done:
        raise EngineError(what)
    return what
