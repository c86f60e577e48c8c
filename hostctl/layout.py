"""Where each customer's files live: one place that maps names to paths.

Every path hostctl writes or hands to uWSGI/nginx is derived here from the
settings, so rendering, applying, status and logs agree on it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from hostctl.model import Settings

VASSAL_EXT = ".ini"
NGINX_EXT = ".conf"
UNIX_SOCKET_MAX = 102  # uWSGI truncates longer socket paths (bind_to_unix)


@dataclass(frozen=True)
class AppPaths:
    vassal: str  # the vassal ini in the Emperor directory
    server_block: str  # the nginx server block
    run_dir: str  # per-customer socket directory
    socket: str
    stats: str
    log_dir: str  # per-customer log directory
    log: str  # uWSGI's log (logto)
    log_backup: str  # its one rotated copy (log-backupname; see logrotate.py)
    access_log: str
    error_log: str


def app_paths(settings: Settings, customer: str, app: str) -> AppPaths:
    vassal_id = f"{customer}_{app}"
    run = os.path.join(settings.run_dir, customer)
    logs = os.path.join(settings.log_dir, customer)
    return AppPaths(
        vassal=os.path.join(settings.emperor_dir, vassal_id + VASSAL_EXT),
        server_block=os.path.join(settings.nginx_dir, vassal_id + NGINX_EXT),
        run_dir=run,
        socket=os.path.join(run, f"{app}.sock"),
        stats=os.path.join(run, f"{app}.stats"),
        log_dir=logs,
        log=os.path.join(logs, f"{app}.log"),
        log_backup=os.path.join(logs, f"{app}.log.1"),
        access_log=os.path.join(logs, f"{app}.access.log"),
        error_log=os.path.join(logs, f"{app}.error.log"),
    )


def emperor_stats(settings: Settings) -> str:
    return os.path.join(settings.run_dir, "emperor.stats")


def serve_dir(settings: Settings) -> str:
    """Where `hostctl serve` keeps its own Emperor and nginx configs, pids and temp files."""
    return os.path.join(settings.run_dir, "serve")


def manifest(settings: Settings) -> str:
    return os.path.join(settings.state_dir, "manifest.json")


def lock(settings: Settings) -> str:
    return os.path.join(settings.state_dir, "apply.lock")
