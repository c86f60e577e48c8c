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

``remove-customer --purge`` records the customer in ``state_dir/purge.json`` (on a
server reached by deploy, the job carries it there and the engine records it); the
next apply that no longer has it kills its processes, removes its cgroups, its
socket, log and home directories (``securefs.rmtree_at``: no symlink in them is
followed) and its Unix user, then forgets the record.

Part of the engine (standard library only): ``apply`` and ``deploy`` run this same
code on the server, after the engine has removed the departed customers' vassals
(``stop_departed``, ``purge``). Decisions are pure (``user_of_vassal``,
``departed``); the effects are small functions with explicit inputs.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import signal
import subprocess
import time
from dataclasses import dataclass
from typing import Iterable, Mapping

from hostctl.engine.core import emperor, fsops, securefs

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
    """Kill every process in ``leaves`` (``v2``: first with ``cgroup.kill``); True when they are empty (or gone)."""
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


# --- the engine's steps: customers that left, and purges ---------------------------------------


@dataclass(frozen=True)
class Host:
    """What the steps need to know about this server, from the job."""

    cgroup_parents: tuple[str, ...]  # <root>/<parent> per controller (one on v2)
    run_dir: str
    log_dir: str
    home_dir: str | None
    uid_range: tuple[int, int]
    accounts: Mapping[str, str]  # every current customer -> its Unix user (empty: not per-customer)
    emperor_stats: str


def departed(removed: Iterable[str], still_running: Iterable[str], held: Iterable[str]) -> list[str]:
    """Customers whose vassals this apply removed and that run no app any more (not held back)."""
    return sorted(set(removed) - set(still_running) - set(held))


def leaves(host: Host, customer: str) -> list[str]:
    return [leaf for leaf in (os.path.join(parent, customer) for parent in host.cgroup_parents) if os.path.isdir(leaf)]


def account(host: Host, customer: str, user: str | None) -> tuple[int, int] | None:
    """(uid, gid) whose processes may all be killed for ``customer``: its own account (a current customer's,
    which passed ``accounts.py``), or for a customer that left, ``user`` when it lies in the uid range and
    is no current customer's; never root."""
    name = host.accounts.get(customer) or user
    if not name:
        return None
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    if entry.pw_uid == 0:
        return None
    if customer in host.accounts:
        return entry.pw_uid, entry.pw_gid
    others = set()
    for other in host.accounts.values():
        try:
            others.add(pwd.getpwnam(other).pw_uid)
        except KeyError:
            continue
    lo, hi = host.uid_range
    if not lo <= entry.pw_uid <= hi or entry.pw_uid in others:
        return None
    return entry.pw_uid, entry.pw_gid


def kill_all(host: Host, customer: str, user: str | None, remove_cgroup: bool) -> list[str]:
    """Kill every process ``customer`` left (its cgroup, its uid); remove its cgroup when it left the inventory."""
    found = leaves(host, customer)
    v2 = any(os.path.exists(os.path.join(leaf, "cgroup.kill")) for leaf in found)
    done = []
    before = set().union(*(cgroup_members(leaf) for leaf in found)) if found else set()
    acct = account(host, customer, user)
    if acct is not None:
        before |= set(processes_of(acct[0]))
    if found and not kill_cgroup(found, v2):
        done.append(f"{customer}: processes are left in {', '.join(found)} after {KILL_TIMEOUT:.0f} s of SIGKILL")
    if acct is not None and not kill_user(*acct):
        done.append(f"{customer}: processes of uid {acct[0]} are left after {KILL_TIMEOUT:.0f} s of SIGKILL")
    if before:
        done.append(f"{customer}: killed {len(before)} process(es) it left running")
    if remove_cgroup:
        for leaf in found:
            try:
                os.rmdir(leaf)
            except OSError as exc:
                done.append(f"cgroup {leaf} was not removed ({exc.strerror}); a later apply retries")
    return done


def stop_departed(host: Host, gone: Mapping[str, str | None], removed_vassals: Iterable[str], present: Iterable[str],
                  messages: list[str]) -> None:
    """Customers that no longer run any app (``gone``: customer -> the user its removed vassal ran as): wait
    until the Emperor let their vassals go, then kill what is left; a customer no longer ``present`` loses its
    cgroup too (and the "not removed yet" notes about it go). ``messages`` gets what was done."""
    if not gone:
        return
    emperor.wait_released(emperor.read_stats, host.emperor_stats, list(removed_vassals), timeout=20.0)
    present = set(present)
    for customer in sorted(gone):
        notes = kill_all(host, customer, gone[customer], remove_cgroup=customer not in present)
        if customer not in present:
            messages[:] = [m for m in messages if not (f"/{customer} was not removed" in m and "later apply" in m)]
        messages += notes


def record_purges(state_dir: str, more: Mapping[str, str]) -> dict[str, str]:
    """The pending purges of this server with ``more`` (from the job) added and saved; all of them."""
    purges = read_purges(state_dir)
    if more and any(purges.get(c) != u for c, u in more.items()):
        purges.update(more)
        save_purges(state_dir, purges)
    return purges


def purge(host: Host, state_dir: str, present: Iterable[str], running: Iterable[str]) -> list[str]:
    """Customers removed with ``--purge`` whose apps are gone here: their processes, cgroups, directories and user."""
    purges = read_purges(state_dir)
    if not purges:
        return []
    present, running = set(present), set(running)
    messages, left = [], dict(purges)
    for customer, user in sorted(purges.items()):
        if customer in present:  # it came back: nothing to purge
            del left[customer]
            continue
        if customer in running or "/" in customer or customer in ("", ".", ".."):
            continue
        notes = kill_all(host, customer, user, remove_cgroup=True)
        messages += notes
        if any("are left" in n or "not removed" in n for n in notes):
            continue  # retried by the next apply
        tmp = os.path.join(state_dir, "tmp")  # its private /tmp (inventory/privatetmp.py: <state_dir>/tmp/<customer>)
        removed = [d for d in (host.run_dir, host.log_dir, tmp) if remove_tree(d, customer)]
        acct = account(host, customer, user)
        if host.home_dir and user and acct is not None and remove_tree(host.home_dir, user):
            removed.append(host.home_dir)
        problem = delete_user(user) if user and acct is not None else None
        if problem:
            messages.append(f"{customer}: {problem}")
            continue
        gone_user = f", Unix user {user}" if user and acct is not None else ""
        where = ", ".join(os.path.join(d, customer if d != host.home_dir else user) for d in removed)
        messages.append(f"purged customer {customer}: {where or 'no directories'}{gone_user}")
        del left[customer]
    if left != purges:
        save_purges(state_dir, left)
    return messages
