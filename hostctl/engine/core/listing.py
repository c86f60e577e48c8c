"""A server's state as one text, and its digest: what deploy reads, plans from, and compares before it writes.

The text lists the manifest, then the mode and sha256 of every vassal (and
on-demand companion) and server block, then the sha256 of every runtime record
(``runtime.py``); ``facts`` follow (uid, cgroup mounts and controllers: what
rendering for this server depends on). ``shell_command`` prints it with
coreutils, so reading a server costs one SSH command and no Python there;
``state_text`` computes the same files part in Python, so the engine can check,
under the lock, that the server still has the state a plan was made from
(compare-and-swap on ``sha256(files part)``).
"""

from __future__ import annotations

import hashlib
import os
import shlex
import stat
from dataclasses import dataclass

MODES_MARK = "@@hostctl-modes@@"
SHA_MARK = "@@hostctl-sha256@@"
RUNTIME_MARK = "@@hostctl-runtime@@"
FACTS_MARK = "@@hostctl-facts@@"
VASSAL_EXT = ".ini"
COMPANION_EXT = ".ini.socket"
NGINX_EXT = ".conf"


@dataclass(frozen=True)
class Where:
    """The directories a server's state lives in."""

    emperor_dir: str
    nginx_dir: str
    state_dir: str
    v1_root: str | None = None  # cgroup settings that override /proc/self/mounts
    v2_root: str | None = None

    @property
    def manifest(self) -> str:
        return os.path.join(self.state_dir, "manifest.json")

    @property
    def runtime_dir(self) -> str:
        return os.path.join(self.state_dir, "runtime")


def shell_command(where: Where, facts: bool = True) -> str:
    """One shell command printing the state text (and the facts)."""
    q = shlex.quote
    files = (f"{{ find {q(where.emperor_dir)} -maxdepth 1 -type f \\( -name '*{VASSAL_EXT}' -o -name '*{COMPANION_EXT}' \\) -print0; "
             f"find {q(where.nginx_dir)} -maxdepth 1 -type f -name '*{NGINX_EXT}' -print0; }} 2>/dev/null")
    records = f"{{ find {q(where.runtime_dir)} -maxdepth 1 -type f -name '*.json' -print0; }} 2>/dev/null"
    text = (f"{{ cat {q(where.manifest)} 2>/dev/null || true; }}; echo; echo {MODES_MARK}; "
            f"{files} | xargs -0 -r stat -c '%a %n' | LC_ALL=C sort; echo {SHA_MARK}; "
            f"{files} | xargs -0 -r sha256sum | LC_ALL=C sort; echo {RUNTIME_MARK}; "
            f"{records} | xargs -0 -r sha256sum | LC_ALL=C sort")
    if not facts:
        return text
    v1 = (f"for c in memory cpu pids; do [ -d {q(where.v1_root)}/$c ] && echo \"dir $c {where.v1_root}/$c\"; done; "
          if where.v1_root else "")
    v2 = q(where.v2_root) if where.v2_root else ""
    return (f"{text}; echo {FACTS_MARK}; echo \"uid $(id -u)\"; "
            f"awk '$3==\"cgroup\"||$3==\"cgroup2\"' /proc/self/mounts 2>/dev/null; {v1}"
            f"for m in $(awk '$3==\"cgroup2\"{{print $2}}' /proc/self/mounts 2>/dev/null) {v2}; do "
            f"[ -r \"$m/cgroup.controllers\" ] && echo \"controllers $m $(cat \"$m/cgroup.controllers\")\"; done; true")


def split(text: str) -> tuple[str, str]:
    """(files part, facts part) of a state text."""
    files, sep, facts = text.partition(f"{FACTS_MARK}\n")
    return files, facts


def digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


def _scan(directory: str, suffixes: tuple[str, ...]) -> list[str]:
    try:
        entries = list(os.scandir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [e.path for e in entries if e.name.endswith(suffixes) and e.is_file(follow_symlinks=False)]


def _sha(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 16), b""):
            h.update(chunk)
    return h.hexdigest()


def state_text(where: Where) -> str:
    """The files part of the state text, as ``shell_command`` prints it (computed here, in Python)."""
    try:
        with open(where.manifest, "rb") as fh:
            manifest = fh.read().decode("utf-8", "surrogateescape")
    except FileNotFoundError:
        manifest = ""
    files = _scan(where.emperor_dir, (VASSAL_EXT, COMPANION_EXT)) + _scan(where.nginx_dir, (NGINX_EXT,))
    modes = sorted(f"{stat.S_IMODE(os.lstat(p).st_mode):o} {p}\n" for p in files)
    sums = sorted(f"{_sha(p)}  {p}\n" for p in files)
    records = sorted(f"{_sha(p)}  {p}\n" for p in _scan(where.runtime_dir, (".json",)))
    return f"{manifest}\n{MODES_MARK}\n{''.join(modes)}{SHA_MARK}\n{''.join(sums)}{RUNTIME_MARK}\n{''.join(records)}"
