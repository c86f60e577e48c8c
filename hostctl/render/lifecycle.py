"""An app's life in its vassal: reload trigger, released code, workers and cron (pure).

Everything here becomes uWSGI options that the vassal's master acts on *after*
it dropped to the customer's user (uWSGI 2.0.21 ``core/uwsgi.c``: ``chdir``,
the plugin init, ``touch-*`` checks, attached daemons and cron all run after
``uwsgi_as_root``), so a customer's symlink is only ever followed with the
customer's own rights:

- **Reload trigger** ``<app dir>/reload.touch``: the customer (or hostctl)
  touches it. A released app chain-reloads (``lazy-apps``: one worker at a
  time, each loading the new code, no request dropped); another app reloads
  gracefully (the master re-executes, keeping its socket).
- **Released apps** (``root:``) run from ``<root>/current``, a symlink that
  ``hostctl release`` replaces. Python 3.11 turns the ``.`` on ``sys.path`` into
  the master's real working directory once, so a worker forked after a switch
  would import the old release (unbit/uwsgi#706): ``python-path`` puts the
  symlink's own path first, and ``hook-pre-app`` re-enters it in each new
  worker (relative file names then resolve in the new release too).
- **Workers** are ``attach-daemon2`` processes (own session, stopped with their
  process group, restarted on the reload trigger and with the app), **cron**
  jobs ``unique-cron`` (a run is skipped while the previous one still runs).
  Both run ``/bin/sh -c`` in the app's directory with its virtualenv on PATH.
  Their commands pass ``values.command`` and are escaped for uWSGI's key=value
  lists here and for the ini by the template's ``ini`` filter.
"""

from __future__ import annotations

import os
import signal

from hostctl.inventory.schema import App

RELOAD_FILE = "reload.touch"
CURRENT = "current"  # <root>/current -> releases/<id>
RELEASES = "releases"
VENV = ".venv"  # <release>/.venv -> ../../venvs/<hash>
STANDARD_PATH = "/usr/local/bin:/usr/bin:/bin"


def workdirs(cfg: App) -> tuple[str | None, str | None]:
    """(working directory, virtualenv) the app runs with; for a released app, through ``current``."""
    if cfg.root:
        live = os.path.join(cfg.root, CURRENT)
        return live, os.path.join(live, VENV)
    return cfg.chdir, cfg.virtualenv


def app_dir(cfg: App) -> str | None:
    """Where the customer's reload trigger lives: the release root, else the app's chdir."""
    return cfg.root or cfg.chdir


def reload_file(cfg: App) -> str | None:
    directory = app_dir(cfg)
    return os.path.join(directory, RELOAD_FILE) if directory else None


def kv_escape(value: str) -> str:
    """A value for uWSGI's ``key=value,key=value`` lists (``uwsgi_kvlist_parse``: backslash escapes)."""
    return value.replace("\\", "\\\\").replace(",", "\\,")


def cron_fields(schedule: str) -> str:
    """``*/15 * * * *`` -> ``-15 -1 -1 -1 -1`` (uWSGI: -1 every, -N every N)."""
    out = []
    for field in schedule.split():
        out.append("-1" if field == "*" else f"-{int(field[2:])}" if field.startswith("*/") else str(int(field)))
    return " ".join(out)


def shell_prefix(cfg: App) -> str:
    """What a worker or cron command runs after: its directory and virtualenv (paths are values.path-safe)."""
    workdir, venv = workdirs(cfg)
    parts = []
    if workdir:
        parts.append(f"cd {workdir} || exit 1")
    if venv:
        parts.append(f"export VIRTUAL_ENV={venv} PATH={venv}/bin:$PATH")
    return "".join(part + "; " for part in parts)


def vassal_lines(cfg: App) -> tuple[tuple[str, str], ...]:
    """The uWSGI options for ``cfg``'s lifecycle, as (key, value) pairs; values still need ini escaping."""
    lines: list[tuple[str, str]] = []
    trigger = reload_file(cfg)
    if cfg.root:
        workdir, venv = workdirs(cfg)
        assert workdir and venv
        lines += [("chdir", workdir), ("virtualenv", venv), ("python-path", workdir),
                  ("lazy-apps", "true"), ("hook-pre-app", f"chdir:{workdir}")]
    if trigger:
        lines.append(("touch-chain-reload" if cfg.root else "touch-reload", trigger))
    prefix = shell_prefix(cfg)
    for name, command in cfg.workers.items():
        options = [f"cmd={kv_escape(prefix + command)}", f"stopsignal={int(signal.SIGTERM)}"]
        if trigger:
            options.append(f"touch={kv_escape(trigger)}")
        lines.append(("attach-daemon2", ",".join(options)))
    for job in cfg.cron:
        lines.append(("unique-cron", f"{cron_fields(job.schedule)} {prefix}{job.command}"))
    return tuple(lines)
