"""Which Unix accounts hostctl may give to a customer: one pure rule, the same on every host.

A vassal runs as its customer's account, and whoever runs as an account can use
all it can: nginx's user can connect to every customer's socket (and a socket
runs code as its owner), a member of another customer's group can read that
customer's vassal (its env secrets), root is root. So ``user:`` in a customer
file may only name an account that

- is not root and not nginx's user, and is in no group of nginx's;
- has a uid inside ``isolation.uid_min``..``uid_max`` (the range hostctl itself
  creates users in: everything below is a system account, e.g. www-data or
  postgres), unless hostctl already gave it to that customer (``granted``: the
  account its live vassal runs as; an older hostctl created users below today's
  range, and refusing them would hold back every customer of an upgraded server
  while the same vassal keeps running as the same account);
- belongs to no other customer: not the same name, not the same uid, not the
  same primary group, and not a member of another customer's group.

``account_problems`` takes the user database as data (``Passwd``/``Group``
entries), so the rule is pure and unit-tested from data; ``refusals`` is its
edge on a server: that server's own user database (``pwd``/``grp``) and the
accounts its live vassals run as (``granted``). The engine runs it on every
host before it writes anything for a customer (``apply.py``), and a local
``validate``/``apply`` runs the same function on the control side to report
the customer's file and field. Only the standard library (shipped with the engine).
"""

from __future__ import annotations

import grp
import os
import pwd
from dataclasses import dataclass
from typing import Mapping

from hostctl.engine.core.manifest import Manifest, sha256

DEFAULT_NGINX_USER = "www-data"


@dataclass(frozen=True)
class Passwd:
    name: str
    uid: int
    gid: int


@dataclass(frozen=True)
class Group:
    name: str
    gid: int
    members: tuple[str, ...] = ()


@dataclass(frozen=True)
class Wanted:
    """One customer's account, as the inventory names it."""

    customer: str
    user: str


def account_problems(wanted: list[Wanted], passwd: dict[str, Passwd], groups: dict[int, Group],
                     uid_min: int, uid_max: int, nginx_user: str | None, nginx_group: str | None,
                     granted: dict[str, str] | None = None) -> dict[str, str]:
    """customer -> why its account may not be used (customers whose account is missing are skipped).

    ``granted``: customer -> the account hostctl's own live vassal of that customer runs as (exempt from the
    uid range only)."""
    granted = granted or {}
    problems: dict[str, str] = {}
    nginx = passwd.get(nginx_user) if nginx_user else None
    nginx_gids = {g.gid for g in groups.values() if g.name == nginx_group}
    if nginx is not None:
        nginx_gids.add(nginx.gid)
    by_user: dict[str, str] = {}
    by_uid: dict[int, str] = {}
    by_gid: dict[int, str] = {}
    for w in wanted:
        entry = passwd.get(w.user)
        if entry is None:
            continue
        owner = by_user.get(w.user) or by_uid.get(entry.uid) or by_gid.get(entry.gid)
        if entry.uid == 0 or w.user == "root":
            problems[w.customer] = f"Unix user {w.user!r} is root; vassals never run as root"
        elif nginx is not None and (w.user == nginx.name or entry.uid == nginx.uid):
            problems[w.customer] = (f"Unix user {w.user!r} is nginx's user ({nginx.name}), which can connect to every "
                                    "customer's socket; give the customer its own user")
        elif entry.gid in nginx_gids:
            problems[w.customer] = f"Unix user {w.user!r} has nginx's group as its primary group; give the customer its own user"
        elif not uid_min <= entry.uid <= uid_max and granted.get(w.customer) != w.user:
            problems[w.customer] = (f"Unix user {w.user!r} has uid {entry.uid}, outside isolation.uid_min..uid_max "
                                    f"({uid_min}..{uid_max}), the range of accounts hostctl may give to customers "
                                    "(below it are system accounts); `hostctl apply --create-users` creates users inside it")
        elif owner is not None:
            problems[w.customer] = f"Unix user {w.user!r} (uid {entry.uid}, gid {entry.gid}) is already the account of customer {owner!r}"
        if w.customer not in problems:
            by_user.setdefault(w.user, w.customer)
            by_uid.setdefault(entry.uid, w.customer)
            by_gid.setdefault(entry.gid, w.customer)
    # Supplementary groups: uWSGI calls initgroups() when it drops to the user, so a membership counts.
    memberships: dict[str, list[Group]] = {}
    for group in groups.values():
        for member in group.members:
            memberships.setdefault(member, []).append(group)
    for w in wanted:
        entry = passwd.get(w.user)
        if entry is None or w.customer in problems:
            continue
        for group in memberships.get(w.user, ()):
            if group.gid == entry.gid:
                continue
            if group.gid in nginx_gids:
                problems[w.customer] = f"Unix user {w.user!r} is a member of nginx's group {group.name!r}, which can enter every customer's socket directory"
            elif by_gid.get(group.gid, w.customer) != w.customer:
                problems[w.customer] = (f"Unix user {w.user!r} is a member of group {group.name!r} of customer "
                                        f"{by_gid[group.gid]!r}, whose vassals and logs that group may read")
            if w.customer in problems:
                break
    return problems


def parse_passwd(text: str) -> dict[str, Passwd]:
    """``getent passwd`` / /etc/passwd lines."""
    out = {}
    for line in text.splitlines():
        parts = line.split(":")
        if len(parts) >= 4 and parts[2].isdigit() and parts[3].isdigit():
            out[parts[0]] = Passwd(parts[0], int(parts[2]), int(parts[3]))
    return out


def parse_group(text: str) -> dict[int, Group]:
    """``getent group`` / /etc/group lines."""
    out = {}
    for line in text.splitlines():
        parts = line.split(":")
        if len(parts) >= 4 and parts[2].isdigit():
            out[int(parts[2])] = Group(parts[0], int(parts[2]), tuple(m for m in parts[3].split(",") if m))
    return out


def user_database(names: set[str]) -> tuple[dict[str, Passwd], dict[int, Group]]:
    """The entries of ``names`` and every group, from this host's user database."""
    passwd = {}
    for name in names:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            continue
        passwd[name] = Passwd(name, entry.pw_uid, entry.pw_gid)
    groups = {g.gr_gid: Group(g.gr_name, g.gr_gid, tuple(g.gr_mem)) for g in grp.getgrall()}
    return passwd, groups


def granted(manifest: Manifest, emperor_dir: str) -> dict[str, str]:
    """customer -> the account (``uid =``) of a live vassal of that customer that hostctl wrote: listed in
    ``manifest`` and with the content recorded there (a file edited by hand does not count)."""
    found: dict[str, str] = {}
    for path, entry in manifest.files.items():
        if entry.kind != "vassal" or not path.startswith(emperor_dir.rstrip(os.sep) + os.sep):
            continue
        try:
            with open(path, "rb", opener=lambda p, flags: os.open(p, flags | os.O_NOFOLLOW | os.O_NONBLOCK)) as fh:
                content = fh.read(1 << 20)
        except OSError:
            continue
        if not entry.accepts(sha256(content)):
            continue
        for line in content.decode("utf-8", "replace").splitlines():
            if line.startswith("uid = "):
                found[entry.customer] = line[len("uid = "):].strip()
    return found


def refusals(accounts: Mapping[str, str], uid_min: int, uid_max: int, nginx_user: str | None, nginx_group: str | None,
             manifest: Manifest, emperor_dir: str) -> dict[str, str]:
    """customer -> why the account ``accounts`` gives it may not be used, decided by this host's user database.

    ``nginx_group`` None: nginx's user's primary group (found by ``account_problems``)."""
    wanted = [Wanted(customer, user) for customer, user in sorted(accounts.items())]
    passwd, groups = user_database({w.user for w in wanted} | ({nginx_user} if nginx_user else set()))
    return account_problems(wanted, passwd, groups, uid_min, uid_max, nginx_user, nginx_group,
                            granted=granted(manifest, emperor_dir))
