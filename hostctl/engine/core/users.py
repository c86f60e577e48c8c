"""Customer Unix users on this server: which are missing, and creating them (``--create-users``).

Users are system users with no login shell. By default they get no home
(``/nonexistent``, as Debian does for daemons); with ``home_dir`` set, each gets
``<home_dir>/<user>`` (mode 0750).
"""

from __future__ import annotations

import os
import pwd
import subprocess
from typing import Iterable

from hostctl.engine.core.errors import EngineError

NOLOGIN = "/usr/sbin/nologin"
NO_HOME = "/nonexistent"


def useradd_argv(user: str, home_dir: str | None, uid_min: int, uid_max: int) -> list[str]:
    """System users (no aging, no mail spool) whose uid and gid come from ``isolation.uid_min..uid_max``
    (the range ``accounts`` accepts for customers), not from the system range below it."""
    argv = ["useradd", "--system", "--user-group", "--shell", NOLOGIN, "--comment", "hostctl customer"]
    argv += [f"-KSYS_UID_MIN={uid_min}", f"-KSYS_UID_MAX={uid_max}", f"-KSYS_GID_MIN={uid_min}", f"-KSYS_GID_MAX={uid_max}"]
    if home_dir:
        argv += ["--home-dir", os.path.join(home_dir, user), "--create-home"]
    else:
        argv += ["--home-dir", NO_HOME, "--no-create-home"]
    return argv + [user]


def missing(users: Iterable[str]) -> list[str]:
    """The users of ``users`` that do not exist here."""
    out = []
    for user in sorted(set(users)):
        try:
            pwd.getpwnam(user)
        except KeyError:
            out.append(user)
    return out


def create(users: Iterable[str], home_dir: str | None, uid_min: int, uid_max: int) -> list[str]:
    """Run useradd for each user; return what was done. Raise on the first failure."""
    done = []
    if home_dir:
        os.makedirs(home_dir, mode=0o755, exist_ok=True)
    for user in users:
        result = subprocess.run(useradd_argv(user, home_dir, uid_min, uid_max), capture_output=True, text=True)
        if result.returncode != 0:
            raise EngineError(f"useradd {user} failed (exit {result.returncode}): {(result.stderr or result.stdout).strip()}")
        if home_dir:
            os.chmod(os.path.join(home_dir, user), 0o750)
        done.append(f"created Unix user {user!r}")
    return done
