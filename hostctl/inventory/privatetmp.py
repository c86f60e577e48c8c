"""A private /tmp per customer, also for apps whose directories lie under /tmp: pure.

Each vassal's master, still root, enters a mount namespace of its own (``unshare =
mount``), makes every mount in it private (nothing propagates back to the host), and
bind-mounts its customer's directory ``<state_dir>/tmp/<customer>`` (root's, 1777,
in a root-only 0700 directory) over ``/tmp``: the apps of one customer share it,
no other customer can reach it. The host's ``/tmp`` entries the vassal needs (its
code, or hostctl's run, log and vassal directories, when they lie under /tmp) are
first bind-mounted onto root-owned directories of the same name inside that
customer directory, and the whole tree goes over ``/tmp`` recursively, so they
stay where they were. Those mount points are root's in a sticky directory: the
customer can neither rename nor replace them, so no mount ever lands on a path
the customer chose (``mount(2)`` follows symlinks, and the master is still root).
"""

from __future__ import annotations

import os
from typing import Iterable

TMP = "/tmp"
ROOT = "tmp"  # <state_dir>/tmp: the customers' /tmp directories


def hidden_paths(paths: Iterable[str | None]) -> list[str]:
    """The paths under /tmp (or /tmp itself) that a private /tmp would cover."""
    return [p for p in paths if p and (p == TMP or p.startswith(TMP + "/"))]


def app_paths(cfg, run_dir: str | None, log_dir: str | None, emperor_dir: str | None = None) -> list[str | None]:
    """Every path the vassal itself opens (``cfg``: a model.App), its vassal file's directory among them."""
    return [cfg.chdir, cfg.virtualenv, getattr(cfg, "root", None), cfg.wsgi if cfg.wsgi.startswith("/") else None,
            run_dir, log_dir, emperor_dir]


def kept(paths: Iterable[str | None]) -> tuple[str, ...]:
    """The entries of /tmp to keep reachable (first components), or ``("",)`` when /tmp itself is needed."""
    return tuple(sorted({os.path.normpath(p)[len(TMP) + 1:].split("/")[0] for p in hidden_paths(paths)}))


def enabled(cfg, run_dir: str | None, log_dir: str | None, emperor_dir: str | None = None) -> bool:
    """``private_tmp`` as set, else on unless the vassal needs /tmp itself (e.g. ``run_dir: /tmp``)."""
    if cfg.private_tmp is not None:
        return cfg.private_tmp
    return "" not in kept(app_paths(cfg, run_dir, log_dir, emperor_dir))


def tmp_root(state_dir: str) -> str:
    return os.path.join(state_dir, ROOT)


def customer_tmp(state_dir: str, customer: str) -> str:
    return os.path.join(tmp_root(state_dir), customer)


def customer_keep(cfgs: Iterable, run_dir: str | None, log_dir: str | None, emperor_dir: str | None) -> tuple[str, ...] | None:
    """The /tmp entries any of a customer's apps with a private /tmp needs (None: none of them has one)."""
    found: set[str] | None = None
    for cfg in cfgs:
        if cfg.enabled and enabled(cfg, run_dir, log_dir, emperor_dir):
            found = (found or set()) | set(kept(app_paths(cfg, run_dir, log_dir, emperor_dir)))
    return None if found is None else tuple(sorted(found))


def vassal_lines(keep: tuple[str, ...], directory: str) -> tuple[tuple[str, str], ...]:
    """The uWSGI options that put the customer's ``directory`` on /tmp, with the ``keep`` entries of the host's."""
    lines = [("unshare", "mount"), ("mount-as-root", "none none / rec,private")]
    lines += [("mount-as-root", f"none {TMP}/{name} {directory}/{name} bind") for name in keep]
    lines += [("mount-as-root", f"none {directory} {TMP} bind,rec"),
              ("mount-as-root", f"none {TMP} {TMP} remount,bind,nosuid,nodev")]
    return tuple(lines)
