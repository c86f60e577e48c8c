"""Stopping a customer for good: every process it left behind is killed, then its traces go.

Removing a vassal file stops the app's master and workers, but a customer's code
can fork a daemon (double fork, ``setsid``) that outlives them, keeps running as
the customer and keeps its cgroup busy. When a customer has no running app left
(removed, or every app ``enabled: false``), apply kills all of its processes:

- its cgroup: ``cgroup.kill`` on v2 (the kernel kills every member, no race with
  forks); on v1, SIGKILL to every task of each of its leaves until they are empty;
- and every process of its Unix user: a child that drops to the user's uid and
  calls ``kill(-1, SIGKILL)``, which reaches exactly the processes that uid may
  signal (all of its own), until none is left. (The user is the customer's
  alone: ``accounts.py``.)

``remove-customer --purge`` records the customer in ``state_dir/purge.json``; the
next apply that no longer has it kills its processes, removes its cgroups, its
socket, log and home directories (``securefs.rmtree_at``: no symlink in them is
followed) and its Unix user, then forgets the record.

Decisions are pure (``user_of_vassal``; which customers left is decided in apply); the effects are small
functions with explicit inputs.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time

from hostctl.engine import fsops
from hostctl.engine.core import securefs

KILL_TIMEOUT = 15.0
PURGE_FILE = "purge.json"


_UID_LINE = re.compile(r"^uid = (\S+)\s*$", re.M)


def user_of_vassal(content: str | None) -> str | None:
    """The Unix user a vassal dropped to (its ``uid =`` line), or None."""
    m = _UID_LINE.search(content or "")
    return m.group(1) if m else None


def cgroup_members(leaf: str) -> set[int]:
    out: set[int] = set()
    for name in ("cgroup.procs", "tasks"):
        try:
            with open(os.path.join(leaf, name)) as fh:
                out |= {int(x) for x in fh.read().split()}
        except OSError:
            continue
    return out


def kill_cgroup(leaves: list[str], v2: bool, timeout: float = KILL_TIMEOUT) -> bool:
    """Kill every process in ``leaves``; True when they are empty (or gone)."""
    deadline = time.monotonic() + timeout
    for leaf in leaves:
        if v2 and os.path.exists(os.path.join(leaf, "cgroup.kill")):
            try:
                with open(os.path.join(leaf, "cgroup.kill"), "w") as fh:
                    fh.write("1")
            except OSError:
                pass
    while True:
        alive = set().union(*(cgroup_members(leaf) for leaf in leaves)) if leaves else set()
        if not alive:
            return True
        if time.monotonic() > deadline:
            return False
        for pid in alive:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.02)


def processes_of(uid: int) -> list[int]:
    """Live (not zombie) processes whose real or effective uid is ``uid``."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status") as fh:
                status = fh.read()
        except OSError:
            continue
        uids = re.search(r"^Uid:\s+(\d+)\s+(\d+)", status, re.M)
        state = re.search(r"^State:\s+(\S)", status, re.M)
        if uids and uid in (int(uids.group(1)), int(uids.group(2))) and not (state and state.group(1) in "ZX"):
            found.append(int(name))
    return found


def kill_user(uid: int, gid: int, timeout: float = KILL_TIMEOUT) -> bool:
    """Kill every process of ``uid`` (never root's); True when none is left."""
    if uid == 0:
        raise ValueError("refusing to kill every process of root")
    deadline = time.monotonic() + timeout
    while processes_of(uid):
        if time.monotonic() > deadline:
            return False
        pid = os.fork()
        if pid == 0:  # the child becomes the user and kills all it may signal: that user's processes
            try:
                os.setgroups([])
                os.setgid(gid)
                os.setuid(uid)
                os.kill(-1, signal.SIGKILL)
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        time.sleep(0.02)
    return True


# --- remove-customer --purge -----------------------------------------------------------


def read_purges(state_dir: str) -> dict[str, str]:
    """customer -> its Unix user (or "" when it had none of its own), as remove-customer --purge recorded."""
    try:
        with open(os.path.join(state_dir, PURGE_FILE), encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def save_purges(state_dir: str, purges: dict[str, str]) -> None:
    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    fsops.write_atomic(os.path.join(state_dir, PURGE_FILE), (json.dumps(purges, sort_keys=True) + "\n").encode(), 0o600)


def remove_tree(parent: str, name: str) -> bool:
    """Remove ``parent/name`` (``parent`` trusted, ``name`` a customer's tree) without following symlinks."""
    try:
        fd = securefs.open_dir(parent)
    except FileNotFoundError:
        return False
    try:
        securefs.rmtree_at(fd, name)
        return True
    except FileNotFoundError:
        return False
    finally:
        os.close(fd)


def delete_user(user: str) -> str | None:
    """``userdel`` (its user-private group goes with it); None when done, else why not."""
    result = subprocess.run(["userdel", user], capture_output=True, text=True)
    if result.returncode not in (0, 6):  # 6: no such user
        return f"userdel {user} failed (exit {result.returncode}): {(result.stderr or result.stdout).strip()}"
    return None
