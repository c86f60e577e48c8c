"""Where each customer's files live, and who owns each directory: one place that maps names to paths.

Every path hostctl writes or hands to uWSGI/nginx is derived here from the
settings, so rendering, applying, status and logs agree on it.

The ownership rule (README "Security model"): every file a root process opens,
creates, chowns or chmods (nginx's master, the Emperor, a vassal's master
before its privilege drop, hostctl) lives in a directory only root can write.
What the customer's processes write (their uWSGI log, opened with ``logto2``
after the drop; their sockets, bound after the drop) lives in directories the
customer owns, and no root process writes there. ``customer_dirs`` and
``shared_dirs`` say it as data, so a local apply and a remote host make the
same directories.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Literal

from hostctl.inventory import privatetmp
from hostctl.inventory.schema import Settings

VASSAL_EXT = ".ini"
NGINX_EXT = ".conf"
UNIX_SOCKET_MAX = 102  # uWSGI truncates longer socket paths (bind_to_unix)


ONDEMAND_DIR = "ondemand"  # run_dir/ondemand: sockets the Emperor (root) binds for on-demand apps
APP_LOG_DIR = "uwsgi"  # log_dir/<customer>/uwsgi: the customer's own uWSGI logs (logto2)


@dataclass(frozen=True)
class AppPaths:
    vassal: str  # the vassal ini in the Emperor directory
    server_block: str  # the nginx server block
    run_dir: str  # per-customer socket directory (the customer's: its vassal binds there after the drop)
    socket: str  # an always-on app's socket, bound by its vassal
    ondemand_socket: str  # an on-demand app's socket, bound by the Emperor in a root-owned directory
    stats: str
    log_dir: str  # per-customer log directory (root's: nginx's master opens the per-app logs there)
    app_log_dir: str  # the customer's own log directory inside it (uWSGI opens its log there after the drop)
    log: str  # uWSGI's log (logto2)
    log_backup: str  # its one rotated copy (log-backupname; see engine/logrotate.py)
    access_log: str
    error_log: str

    def listen_socket(self, on_demand: bool) -> str:
        """The socket nginx connects to."""
        return self.ondemand_socket if on_demand else self.socket


def app_paths(settings: Settings, customer: str, app: str) -> AppPaths:
    vassal_id = f"{customer}_{app}"
    run = os.path.join(settings.run_dir, customer)
    logs = os.path.join(settings.log_dir, customer)
    app_logs = os.path.join(logs, APP_LOG_DIR)
    return AppPaths(
        vassal=os.path.join(settings.emperor_dir, vassal_id + VASSAL_EXT),
        server_block=os.path.join(settings.nginx_dir, vassal_id + NGINX_EXT),
        run_dir=run,
        socket=os.path.join(run, f"{app}.sock"),
        ondemand_socket=os.path.join(settings.run_dir, ONDEMAND_DIR, f"{vassal_id}.sock"),
        stats=os.path.join(run, f"{app}.stats"),
        log_dir=logs,
        app_log_dir=app_logs,
        log=os.path.join(app_logs, f"{app}.log"),
        log_backup=os.path.join(app_logs, f"{app}.log.1"),
        access_log=os.path.join(logs, f"{app}.access.log"),
        error_log=os.path.join(logs, f"{app}.error.log"),
    )


Who = Literal["root", "customer", "nginx"]


@dataclass(frozen=True)
class DirSpec:
    """A directory hostctl makes, with its owner, group and mode, and why (the README's table says the same)."""

    path: str
    owner: Who  # "root" or "customer"
    group: Who  # "root", "customer" or "nginx" (nginx's workers' group)
    mode: int
    why: str


def customer_dirs(settings: Settings, customer: str, tmp_keep: tuple[str, ...] | None = None) -> list[DirSpec]:
    """The directories of one customer, parents first; ``tmp_keep``: its private /tmp's mount points (None: none)."""
    paths = app_paths(settings, customer, "x")
    return private_tmp_dirs(settings, customer, tmp_keep) + [
        DirSpec(paths.run_dir, "customer", "nginx", 0o2750,
                "its vassals bind their sockets and stats sockets here after dropping to the customer's user; "
                "only the customer and nginx's group may enter; root creates nothing inside"),
        DirSpec(paths.log_dir, "root", "customer", 0o750,
                "nginx's master (root) opens the per-app access and error logs here, so only root may write it; "
                "the customer's group may read them"),
        DirSpec(paths.app_log_dir, "customer", "customer", 0o750,
                "the app's own uWSGI log, opened by its master after the privilege drop (logto2); no root process writes here"),
    ]


def private_tmp_dirs(settings: Settings, customer: str, keep: tuple[str, ...] | None) -> list[DirSpec]:
    """The customer's /tmp (``inventory/privatetmp.py``) and the mount points of the host's entries it keeps."""
    if keep is None:
        return []
    own = privatetmp.customer_tmp(settings.state_dir, customer)
    return [
        DirSpec(privatetmp.tmp_root(settings.state_dir), "root", "root", 0o700,
                "the customers' /tmp directories; only root (a vassal's master before its drop) goes through here"),
        DirSpec(own, "root", "root", 0o1777,
                "bind-mounted over /tmp in each of the customer's vassals; sticky, so the customer cannot rename "
                "or replace root's mount points in it"),
    ] + [DirSpec(os.path.join(own, name), "root", "root", 0o755,
                 "where the host's /tmp entry of that name is mounted back (the app's or hostctl's directories)")
         for name in keep]


def shared_dirs(settings: Settings) -> list[DirSpec]:
    """Directories shared by all customers that root writes into (besides the Emperor's and nginx's)."""
    return [
        DirSpec(os.path.join(settings.run_dir, ONDEMAND_DIR), "root", "nginx", 0o750,
                "the Emperor (root) unlinks, binds and chmods on-demand sockets here (0666), so only root may write "
                "and only nginx's group may enter"),
    ]


def emperor_stats(settings: Settings) -> str:
    return os.path.join(settings.run_dir, "emperor.stats")


def serve_dir(settings: Settings) -> str:
    """Where `hostctl serve` keeps its own Emperor and nginx configs, pids and temp files."""
    return os.path.join(settings.run_dir, "serve")


def manifest(settings: Settings) -> str:
    return os.path.join(settings.state_dir, "manifest.json")


def lock(settings: Settings) -> str:
    return os.path.join(settings.state_dir, "apply.lock")
