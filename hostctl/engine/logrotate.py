"""Log retention: every log hostctl creates is rotated, and only so many rotated files are kept.

A customer must not be able to fill the disk through its logs, and root must never
rename or create a file in a directory a customer can write (a planted symlink would
turn that into "root writes where I say"). So the work is split by who owns the file:

- the app's own log (uWSGI, ``log_dir/<customer>/<app>.log``) is rotated by the
  vassal's master itself, after its privilege drop: ``log-maxsize`` with one fixed
  backup name (``<app>.log.1``), so at most two files of ``logs.max_size`` each;
- nginx's per-app logs (and, under `hostctl serve`, the Emperor's and nginx's main
  logs) are rotated by logrotate as root, in directories only root can write, with
  the configuration rendered here from hostctl.yaml's ``logs:``. ``copytruncate``:
  the writers keep their descriptor, so no signal is needed, and nginx's workers
  need no access to the directory (a USR1 reopen would need it).

``patterns`` and ``render`` are pure; ``safe_dirs`` and ``run`` look at the disk.
"""

from __future__ import annotations

import glob
import os
import stat
import subprocess

import jinja2

from hostctl.errors import HostctlError
from hostctl.inventory.schema import Settings
from hostctl.render import layout, templates

TEMPLATE = "logrotate.conf.j2"
CONFIG_NAME = "logrotate.conf"
STATUS_NAME = "logrotate.status"
LOGROTATE = ("logrotate", "/usr/sbin/logrotate")
SERVE_LOGS = ("emperor.log", "nginx.error.log")  # `hostctl serve`'s own, in log_dir (cli/serve.py)


def nginx_log_patterns(settings: Settings) -> tuple[str, str]:
    """Glob patterns that match every app's nginx access and error log (names never hold glob characters)."""
    paths = layout.app_paths(settings, "*", "*")
    return paths.access_log, paths.error_log


def quote(path: str) -> str:
    if any(c in path for c in '"\n\\') or not path.startswith("/"):
        raise HostctlError(f"cannot put {path!r} in a logrotate configuration (absolute paths without quotes only)")
    return f'"{path}"'


def patterns(settings: Settings, nginx_dirs: list[str], *, serve: bool) -> list[str]:
    """What logrotate rotates (quoted): nginx's per-app logs in ``nginx_dirs`` (checked by ``safe_dirs``);
    with ``serve``, also the logs of `hostctl serve`'s own Emperor and nginx in ``log_dir``."""
    names = [os.path.basename(p) for p in nginx_log_patterns(settings)]
    out = [quote(os.path.join(d, name)) for d in sorted(nginx_dirs) for name in names]
    if serve:
        out += [quote(os.path.join(settings.log_dir, name)) for name in SERVE_LOGS]
    return out


def host_patterns(settings: Settings) -> list[str]:
    """A deployed server's patterns: globs over every customer's directory, expanded by logrotate
    itself (the server runs logrotate, not hostctl). Deploy keeps those directories root's
    (README "Security model"), and logrotate refuses any a group or others may write."""
    return [quote(p) for p in nginx_log_patterns(settings)]


def render(settings: Settings, env: jinja2.Environment, items: list[str]) -> str:
    return templates.render(templates.get(env, TEMPLATE), logs=settings.logs, patterns=items)


def safe_dirs(settings: Settings, as_root: bool) -> tuple[list[str], list[str]]:
    """The directories holding nginx's per-app logs, split into (safe, refused).

    As root, a directory is safe when it is a real directory (not a symlink) owned by
    root that neither group nor others may write: logrotate (root) creates, copies and
    truncates files there, which in a customer-writable directory would follow the
    customer's symlinks. Not as root, nothing runs with more rights than the
    files' owner, so every directory is safe.
    """
    safe, refused = [], []
    for pattern in sorted({os.path.dirname(p) for p in nginx_log_patterns(settings)}):
        for path in sorted(glob.glob(pattern)):
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if not stat.S_ISDIR(st.st_mode):
                continue
            if as_root and (st.st_uid != 0 or st.st_mode & 0o022):
                refused.append(path)
            else:
                safe.append(path)
    return safe, refused


def logrotate_binary() -> str:
    import shutil

    for name in LOGROTATE:
        found = shutil.which(name)
        if found:
            return found
    raise HostctlError("logrotate was not found; install it (apt-get install logrotate)")


def run(settings: Settings, env: jinja2.Environment, *, serve: bool, as_root: bool) -> list[str]:
    """Render the configuration into state_dir and run logrotate on it once; return what to tell the operator."""
    safe, refused = safe_dirs(settings, as_root)
    messages = [f"not rotating the nginx logs in {path}: a customer could write there (not a root-owned 0755 directory)"
                for path in refused]
    content = render(settings, env, patterns(settings, safe, serve=serve))
    os.makedirs(settings.state_dir, mode=0o700, exist_ok=True)
    conf = os.path.join(settings.state_dir, CONFIG_NAME)
    tmp = conf + f".hostctl-tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(content)
    os.chmod(tmp, 0o644)  # logrotate refuses configs that group or others may write
    os.replace(tmp, conf)
    argv = [logrotate_binary(), "-s", os.path.join(settings.state_dir, STATUS_NAME), conf]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        raise HostctlError(f"{' '.join(argv)} did not finish within 300 s") from None
    if proc.returncode != 0:
        raise HostctlError(f"{' '.join(argv)} failed:\n{(proc.stdout + proc.stderr).strip()}")
    return messages
