"""Read rendered vassals back the way uWSGI will, and check them against the intent: pure.

The filters in ``escape.py`` are one line of defence and validation in
``inventory/values.py`` another; this is the check after rendering, per customer, before
anything goes live (``engine/vetting.py``). A vassal is parsed like uWSGI's
``core/ini.c`` does (lines split on ``\\n``, space/tab/CR stripped, ``;``/``#``
comments, ``key = value`` split at the first ``=``, only ``[uwsgi]`` counts),
then each value is expanded like uWSGI's three stages (``%`` magic, ``$(``/``@(``,
``%(placeholder)``). A value that would be expanded in any other way than
through hostctl's own placeholders, or a user value that does not read back
exactly, or an extra ``env``/``socket``/... line, is a problem.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass

from hostctl.inventory import values
from hostctl.render import lifecycle
from hostctl.render.layout import AppPaths

SECTION = "uwsgi"
PLACEHOLDERS = {"hc_dollar": "$", "hc_at": "@"}  # see escape.INI_PLACEHOLDERS
_KEY = re.compile(r"^[a-z][a-z0-9-]*$")
_PLACEHOLDER = re.compile(r"%\(([^)]*)\)")


@dataclass(frozen=True)
class Directive:
    line: int
    key: str
    raw: str  # as written
    value: str  # as uWSGI will see it
    expanded: str | None = None  # why the value would be expanded unintentionally


def _strip(text: str) -> str:
    return text.strip(" \t\r")


def expand(raw: str) -> tuple[str, str | None]:
    """``raw`` through uWSGI's stages; the value plus a reason when something else would expand."""
    if "%" not in raw and "$(" not in raw and "@(" not in raw:
        return raw, None
    out, i, why = [], 0, None
    while i < len(raw):  # 1. magic variables: %% is a literal %, %x is magic
        if raw[i] == "%" and i + 1 < len(raw):
            nxt = raw[i + 1]
            if nxt == "%":
                out.append("%")
                i += 2
                continue
            if nxt != "(":
                why = why or f"'%{nxt}' would be replaced by a uWSGI magic variable"
        out.append(raw[i])
        i += 1
    value = "".join(out)
    for token in ("$(", "@("):  # 2. environment variables and file contents
        if token in value:
            why = why or f"{token!r} would be expanded by uWSGI"
    result, pos = [], 0  # 3. placeholders, only hostctl's own
    for match in _PLACEHOLDER.finditer(value):
        name = match.group(1)
        result.append(value[pos:match.start()])
        if name in PLACEHOLDERS:
            result.append(PLACEHOLDERS[name])
        else:
            why = why or f"'%({name})' would be expanded as a uWSGI placeholder"
            result.append(match.group(0))
        pos = match.end()
    result.append(value[pos:])
    return "".join(result), why


def parse_ini(text: str) -> list[Directive]:
    """The ``[uwsgi]`` directives of a vassal, in order, as uWSGI reads them."""
    section = ""
    out = []
    for number, line in enumerate(text.split("\n"), 1):
        line = _strip(line.split("\0", 1)[0])
        if not line or line[0] in ";#":
            continue
        if line[0] == "[":
            section = line[1:-1]
            continue
        key, _, raw = line.partition("=")
        if section != SECTION:
            continue
        raw = _strip(raw)
        value, why = expand(raw)
        out.append(Directive(number, _strip(key), raw, value, why))
    return out


def values_of(directives: list[Directive], key: str) -> list[str]:
    return [d.value for d in directives if d.key == key]


def intended(cfg, paths: AppPaths, user: str | None) -> dict[str, list[str]]:
    """The directives that carry inventory values, as they must read back (``cfg``: a model.App)."""
    entry = values.wsgi_file(cfg.wsgi)
    want: dict[str, list[str]] = {
        "env": [f"{k}={v}" for k, v in cfg.env.items()],
        # per-customer: set after the privilege drop on a start by the Emperor (vassal.ini.j2)
        "hook-as-user": [f"!putenv:{k}={v}" for k, v in cfg.env.items()] if user else [],
        "chdir": [cfg.chdir] if cfg.chdir else [],
        "virtualenv": [cfg.virtualenv] if cfg.virtualenv else [],
        "wsgi-file": [entry[0]] if entry else [],
        "callable": [entry[1]] if entry and entry[1] else [],
        "module": [] if entry else [cfg.wsgi],
        "uid": [user] if user else [],
        "gid": [user] if user else [],
        "stats": [paths.stats],
        "logto2": [paths.log],
    }
    if not getattr(cfg, "on_demand", False):
        want["socket"] = [paths.socket]
    for key, value in lifecycle.vassal_lines(cfg):  # reload trigger, released code, workers, cron
        want[key] = want.get(key, []) + [value]
    return want


def vassal_problems(text: str, want: dict[str, list[str]]) -> list[str]:
    """Why the vassal ``text`` does not say exactly ``want`` (empty when it does)."""
    directives = parse_ini(text)
    problems = []
    for d in directives:
        if not _KEY.match(d.key):
            problems.append(f"line {d.line}: {d.key!r} is not a uWSGI option name")
        if d.expanded:
            problems.append(f"line {d.line}: {d.key}: {d.expanded}")
    for key, values in want.items():
        got = values_of(directives, key)
        if got != values:
            problems.append(f"{key}: reads back as {got!r}, expected {values!r}")
    return problems


def _under(path: str, directory: str) -> bool:
    return path.startswith(directory.rstrip("/") + "/")


def path_problems(cfg, paths: AppPaths, run_dir: str, log_dir: str) -> list[str]:
    """Paths that are not absolute and normalised, or runtime files outside the customer's directories."""
    problems = []
    mine = [paths.socket, paths.ondemand_socket, paths.stats, paths.log, paths.access_log, paths.error_log]
    entry = values.wsgi_file(cfg.wsgi)
    theirs = [p for p in (cfg.chdir, cfg.virtualenv, entry[0] if entry else None, *cfg.static.values()) if p]
    for path in mine + theirs:
        if not path.startswith("/") or posixpath.normpath(path) != path:
            problems.append(f"{path!r} is not an absolute, normalised path")
    for path in (paths.socket, paths.stats):
        if not _under(path, paths.run_dir) or not _under(paths.run_dir, run_dir):
            problems.append(f"{path!r} is outside the customer's socket directory")
    if not _under(paths.ondemand_socket, run_dir):
        problems.append(f"{paths.ondemand_socket!r} is outside the on-demand socket directory")
    if not _under(paths.log, paths.app_log_dir):
        problems.append(f"{paths.log!r} is outside the customer's own log directory")
    for path in (paths.log, paths.access_log, paths.error_log):
        if not _under(path, paths.log_dir) or not _under(paths.log_dir, log_dir):
            problems.append(f"{path!r} is outside the customer's log directory")
    return problems


def server_names(text: str) -> list[str]:
    """The names of every ``server_name`` directive in a server block (comments skipped)."""
    names = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("server_name ") and line.endswith(";"):
            names += line[len("server_name "):-1].split()
    return names
