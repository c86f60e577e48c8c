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
entries, from ``pwd``/``grp`` here or from ``getent`` output on a server), so
the rule runs wherever users are resolved. Only the standard library.
"""

from __future__ import annotations

from dataclasses import dataclass


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
