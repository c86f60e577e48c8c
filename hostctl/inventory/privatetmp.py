"""Whether an app's vassal gets a private /tmp: pure.

The vassal's master, still root, enters a mount namespace of its own and mounts a
tmpfs on /tmp (``unshare = mount``; see the vassal template), so what a customer
puts in /tmp is seen by no one else and what others put there is not seen by it.
That tmpfs hides everything under the host's /tmp from the vassal, so an app whose
files (or hostctl's run and log directories) lie under /tmp cannot have one:
``private_tmp: true`` is then an error, and unset means off.
"""

from __future__ import annotations

from typing import Iterable

TMP = "/tmp"


def hidden_paths(paths: Iterable[str | None]) -> list[str]:
    """The paths a private /tmp would hide from the vassal."""
    return [p for p in paths if p and (p == TMP or p.startswith(TMP + "/"))]


def app_paths(cfg, run_dir: str, log_dir: str) -> list[str | None]:
    """Every path the vassal itself opens (``cfg``: a model.App)."""
    return [cfg.chdir, cfg.virtualenv, getattr(cfg, "root", None), cfg.wsgi if cfg.wsgi.startswith("/") else None,
            run_dir, log_dir]


def enabled(cfg, run_dir: str, log_dir: str) -> bool:
    """``private_tmp`` as set, or on when nothing the vassal needs lies under /tmp."""
    if cfg.private_tmp is not None:
        return cfg.private_tmp
    return not hidden_paths(app_paths(cfg, run_dir, log_dir))
