"""nginx seen from the control side: the scaffold main config, rendered here; checking and reloading are the engine's.

Candidate server blocks are checked with ``nginx -t`` inside a throw-away
scaffold (a minimal main config in a temporary directory) before anything goes
live; ``hostctl serve`` runs nginx with a scaffold too. The engine
(``hostctl/engine/core/nginx.py``) gets the scaffold text around ``PREFIX``.
"""

from __future__ import annotations

import os
import shlex
from typing import Mapping

import jinja2

from hostctl.render import layout, listens, templates
from hostctl.engine.core import nginx as engine
from hostctl.engine.core.nginx import CheckResult  # noqa: F401
from hostctl.errors import from_engine
from hostctl.inventory.schema import Settings

SCAFFOLD_TEMPLATE = "nginx.conf.j2"


def scaffold(settings: Settings, env: jinja2.Environment, prefix: str, include: str, *,
             user: str | None = None, group: str | None = None, default_server: bool = True,
             https: bool = False) -> str:
    """The text of a minimal nginx.conf around ``include`` (a glob of server blocks).

    ``https``: the default servers include one for the HTTPS addresses (refusing unknown names' handshakes).
    """
    return templates.render(
        templates.get(env, SCAFFOLD_TEMPLATE),
        settings=settings, user=user, group=group, include=include,
        default_server=default_server and settings.nginx.default_server,
        http_listens=listens.http(settings), https_listens=listens.https(settings) if https else (),
        pidfile=os.path.join(prefix, "nginx.pid"), error_log=os.path.join(prefix, "error.log"),
        temp_dir=os.path.join(prefix, "tmp"),
    )


def engine_nginx(settings: Settings, env: jinja2.Environment) -> engine.Nginx:
    """How the engine checks and reloads nginx with these settings (the scaffold rendered here, around ``PREFIX``)."""
    text = scaffold(settings, env, engine.PREFIX, os.path.join(engine.PREFIX, "conf.d", "*.conf"))
    argv = dump_command(settings)
    return engine.Nginx(settings.nginx.binary, text, settings.nginx.test_command, settings.nginx.reload_command,
                        layout.serve_dir(settings), settings.nginx.pid_file, shlex.join(argv) if argv else None)


def dump_command(settings: Settings) -> list[str] | None:
    """How to print this host's live nginx configuration: ``nginx.dump_command``, else ``test_command`` with -T
    for -t (None: ``hostctl serve``'s nginx, which has only hostctl's own servers)."""
    if settings.nginx.dump_command is not None:
        return shlex.split(settings.nginx.dump_command) or None
    if not settings.nginx.test_command:
        return None
    argv = shlex.split(settings.nginx.test_command)
    if "-t" not in argv:
        return None
    return ["-T" if arg == "-t" else arg for arg in argv if arg != "-q"]


def check(settings: Settings, env: jinja2.Environment, server_blocks: Mapping[str, str]) -> CheckResult:
    """``nginx -t`` on ``{file name: content}`` alone, in a scaffold; the live config is untouched."""
    with from_engine():
        return engine.check(engine_nginx(settings, env), server_blocks)


def serve_pid(settings: Settings) -> int | None:
    """The pid of the nginx master that `hostctl serve` runs, when it is alive."""
    return engine.serve_pid(engine.Nginx(serve_dir=layout.serve_dir(settings)))


def reload(settings: Settings) -> str:
    """Reload nginx gracefully (the engine's step); return what was done, raise when it failed."""
    with from_engine():
        return engine.reload(engine.Nginx(reload_command=settings.nginx.reload_command, serve_dir=layout.serve_dir(settings),
                                          pid_file=settings.nginx.pid_file))
