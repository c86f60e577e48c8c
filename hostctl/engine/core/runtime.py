"""The runtime record: what a server needs besides files, kept in ``state_dir`` so it can rebuild itself.

After a reboot ``/run`` is empty and cgroups are gone, and every vassal fails
(``bind(): No such file or directory``, or uWSGI's failed cgroup ``mkdir``). So
each apply records, per customer, the directories and the cgroup (directories
and limit files) it ensured, in ``state_dir/runtime/<customer>.json``, and the
base directories in ``state_dir/runtime.json``. ``restore`` (the boot-time
unit, ordered before the Emperor) recreates all of it from those records alone,
customer by customer: one customer's damaged record is reported and skipped,
the others come back. Before nginx starts it also vets the live server blocks
(the check the last apply recorded): a customer whose blocks fail ``nginx -t``
on their own (its log directory is a file now) has them set aside, so nginx
starts for everyone else.

Owners are Unix names, resolved on the server when the directories are made
(a group ``@USER`` is USER's primary group). Directories go through
``securefs``: never a customer's symlink followed, and a directory root takes
back from a customer (an older layout) is cleaned first.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

from hostctl.engine.core import cgroups, fsops, securefs
from hostctl.engine.core.cgroups import CustomerCgroup
from hostctl.engine.core.errors import EngineError

VERSION = 1
DIR = "runtime"
HOST_RECORD = "runtime.json"


@dataclass(frozen=True)
class Directory:
    path: str
    mode: int
    owner: str | None = None  # a Unix user name; None: leave as is
    group: str | None = None  # a group name, or "@USER": USER's primary group; None: leave as is


@dataclass(frozen=True)
class CustomerRuntime:
    """One customer's directories and cgroup, as ensured by the last apply."""

    customer: str
    user: str | None  # the Unix user its vassals run as (None: the invoking user)
    dirs: tuple[Directory, ...] = ()
    cgroup: CustomerCgroup | None = None

    def to_json(self) -> str:
        data = {"version": VERSION, "customer": self.customer, "user": self.user, "dirs": _dirs_out(self.dirs),
                "cgroup": self.cgroup.to_dict() if self.cgroup is not None else None}
        return json.dumps(data, sort_keys=True, separators=(",", ":")) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "CustomerRuntime":
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("version") != VERSION:
            raise ValueError("not a runtime record of this version")
        name = str(data["customer"])
        dirs = _dirs_in(data["dirs"])
        cg = CustomerCgroup.from_dict(name, data["cgroup"]) if data.get("cgroup") is not None else None
        return cls(name, data.get("user"), dirs, cg)


@dataclass(frozen=True)
class NginxCheck:
    """How ``restore`` vets the live server blocks before nginx starts (the engine records it at every apply)."""

    nginx_dir: str
    binary: str
    scaffold: str  # nginx.conf text around nginx.PREFIX/conf.d/*.conf


@dataclass(frozen=True)
class HostRuntime:
    """The base directories (created if missing), the shared ones (owned as the layout says), where
    customer cgroups live (to find departed customers' cgroups), and how to vet the server blocks."""

    dirs: tuple[Directory, ...] = ()
    cgroup_parents: tuple[str, ...] = ()
    shared: tuple[Directory, ...] = ()
    nginx: NginxCheck | None = None

    def to_json(self) -> str:
        data = {"version": VERSION, "dirs": _dirs_out(self.dirs), "cgroup_parents": list(self.cgroup_parents),
                "shared": _dirs_out(self.shared)}
        if self.nginx is not None:
            data["nginx"] = [self.nginx.nginx_dir, self.nginx.binary, self.nginx.scaffold]
        return json.dumps(data, sort_keys=True, separators=(",", ":")) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "HostRuntime":
        data = json.loads(text)
        if not isinstance(data, dict) or data.get("version") != VERSION:
            raise ValueError("not a runtime record of this version")
        check = NginxCheck(*map(str, data["nginx"])) if data.get("nginx") else None
        return cls(_dirs_in(data["dirs"]), tuple(data["cgroup_parents"]), _dirs_in(data.get("shared", ())), check)


def _dirs_out(dirs: Iterable[Directory]) -> list:
    return [[d.path, d.mode, d.owner, d.group] for d in dirs]


def _dirs_in(rows: Iterable) -> tuple[Directory, ...]:
    return tuple(Directory(str(p), int(m), o, g) for p, m, o, g in rows)


def read_host(state_dir: str) -> HostRuntime:
    """The host record (empty when missing or damaged)."""
    try:
        with open(os.path.join(state_dir, HOST_RECORD), encoding="utf-8") as fh:
            return HostRuntime.from_json(fh.read())
    except (OSError, ValueError, KeyError, TypeError):
        return HostRuntime()


def record_dir(state_dir: str) -> str:
    return os.path.join(state_dir, DIR)


def record_path(state_dir: str, customer: str) -> str:
    return os.path.join(state_dir, DIR, f"{customer}.json")


# --- making it so -------------------------------------------------------------------


def _uid(name: str | None) -> int:
    if name is None:
        return -1
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        raise EngineError(f"Unix user {name!r} does not exist on this server") from None


def _gid(name: str | None) -> int:
    if name is None:
        return -1
    try:
        return pwd.getpwnam(name[1:]).pw_gid if name.startswith("@") else grp.getgrnam(name).gr_gid
    except KeyError:
        raise EngineError(f"Unix {'user' if name.startswith('@') else 'group'} {name.lstrip('@')!r} does not exist on this server") from None


def ensure_base(dirs: Iterable[Directory]) -> None:
    """The operator's directories (trusted): created when missing."""
    for d in dirs:
        os.makedirs(d.path, mode=d.mode, exist_ok=True)


def ensure_dirs(dirs: Iterable[Directory]) -> list[str]:
    """Create or fix each directory (parents first) without following a customer's symlink; what was migrated."""
    return securefs.make_dirs([securefs.WantedDir(d.path, d.mode, _uid(d.owner), _gid(d.group)) for d in dirs])


def ensure_all(host: HostRuntime, records: Sequence[CustomerRuntime]) -> tuple[list[str], dict[str, str]]:
    """The shared directories, then each customer's: what apply, deploy and `limits --apply` make (``restore``
    makes the same). Returns (migration notes, {customer: why} for those whose directories could not be made):
    one customer's broken directory does not stop the others'."""
    messages = ensure_dirs(host.shared)
    broken: dict[str, str] = {}
    for record in records:
        try:
            messages += ensure_dirs(record.dirs)
        except (OSError, EngineError) as exc:
            broken[record.customer] = exc.message if isinstance(exc, EngineError) else f"{exc.filename}: {exc.strerror}"
    return messages, broken


def cgroup_changes(records: Sequence[CustomerRuntime], parents: Sequence[str], keep: Iterable[str] = ()) -> tuple[cgroups.CgroupChange, ...]:
    """What to change so that the live cgroups match ``records``; other customers' cgroups under ``parents``
    go, except those of ``keep`` (customers held back without a record: their cgroup stays as it is)."""
    desired = [r.cgroup for r in records if r.cgroup is not None and (r.cgroup.dirs or r.cgroup.writes)]
    live, present = cgroups.read_live(desired, parents)
    kept = set(keep)
    return cgroups.plan(desired, live, [d for d in present if os.path.basename(d) not in kept])


def save(state_dir: str, host: HostRuntime | None, records: Sequence[CustomerRuntime], everyone: Iterable[str]) -> None:
    """Write the records that differ (``host`` None: keep that record); drop those of customers not in ``everyone``."""
    base = record_dir(state_dir)
    os.makedirs(base, mode=0o700, exist_ok=True)
    if host is not None:
        _write_if_changed(os.path.join(state_dir, HOST_RECORD), host.to_json())
    for rec in records:
        _write_if_changed(record_path(state_dir, rec.customer), rec.to_json())
    keep = {f"{c}.json" for c in everyone}
    for name in os.listdir(base):
        if name.endswith(".json") and name not in keep:
            fsops.remove(os.path.join(base, name))


def _write_if_changed(path: str, text: str) -> None:
    try:
        with open(path, encoding="utf-8") as fh:
            if fh.read() == text:
                return
    except (OSError, ValueError):
        pass
    fsops.write_atomic(path, text.encode(), 0o600)


# --- after a reboot -----------------------------------------------------------------


@dataclass
class Restored:
    customers: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # customer (or a record file) -> why
    messages: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed


def restore(state_dir: str) -> Restored:
    """Recreate the base directories, and per customer its directories, cgroup and limits, from the records;
    then set aside the server blocks that would keep nginx from starting (``_vet_server_blocks``)."""
    out = Restored()
    host: HostRuntime | None = None
    try:
        with open(os.path.join(state_dir, HOST_RECORD), encoding="utf-8") as fh:
            host = HostRuntime.from_json(fh.read())
        ensure_base(host.dirs)
        out.messages += ensure_dirs(host.shared)
    except FileNotFoundError:
        out.messages.append(f"{os.path.join(state_dir, HOST_RECORD)} is missing (nothing applied here yet?)")
    except (OSError, ValueError, KeyError, TypeError, EngineError) as exc:
        out.failed["(base directories)"] = str(exc)
    try:
        names = sorted(n for n in os.listdir(record_dir(state_dir)) if n.endswith(".json"))
    except FileNotFoundError:
        names = []
    for name in names:
        customer = name[:-len(".json")]
        try:
            with open(os.path.join(record_dir(state_dir), name), encoding="utf-8") as fh:
                rec = CustomerRuntime.from_json(fh.read())
            if rec.customer != customer:
                raise ValueError(f"it names customer {rec.customer!r}")
            out.messages += ensure_dirs(rec.dirs)
            out.messages += cgroups.apply(cgroup_changes([rec], ()))
            out.customers.append(customer)
        except (OSError, ValueError, KeyError, TypeError, EngineError) as exc:
            why = exc.message if isinstance(exc, EngineError) else f"{type(exc).__name__}: {exc}"
            out.failed[customer] = f"{os.path.join(record_dir(state_dir), name)}: {why}"
    if host is not None and host.nginx is not None:
        _vet_server_blocks(state_dir, host.nginx, out)
    return out


def _vet_server_blocks(state_dir: str, check: NginxCheck, out: Restored) -> None:
    """Before nginx starts: set aside the server blocks of customers whose blocks fail ``nginx -t`` on their
    own (a customer's log directory that is not a directory any more: nginx could not start for anyone)."""
    from hostctl.engine.core import nginx, vetting
    from hostctl.engine.core.plan import read_manifest

    server = nginx.Nginx(binary=check.binary, scaffold=check.scaffold)
    try:
        broken, after = vetting.vet_live(check.nginx_dir, state_dir, read_manifest(os.path.join(state_dir, "manifest.json")),
                                         lambda blocks: nginx.check(server, blocks))
    except (OSError, ValueError, EngineError) as exc:
        out.failed["(server blocks)"] = exc.message if isinstance(exc, EngineError) else f"{type(exc).__name__}: {exc}"
        return
    held = vetting.held_dir(state_dir)
    for customer, error in sorted(broken.items()):
        why = (f"its server blocks fail nginx -t on their own ({error}): set aside into {held} so that nginx "
               "starts for the others; the next apply or deploy writes them again")
        out.failed[customer] = f"{out.failed[customer]}; {why}" if customer in out.failed else why
        if customer in out.customers:
            out.customers.remove(customer)
    if not after.ok:
        out.failed["(server blocks)"] = f"nginx -t still fails without them: {vetting.first_error(after.output)}"


def read_all(state_dir: str, customers: Iterable[str] | None = None) -> dict[str, CustomerRuntime]:
    """Every readable customer record (or those of ``customers``); damaged ones are left out."""
    if customers is None:
        try:
            names = [n for n in os.listdir(record_dir(state_dir)) if n.endswith(".json")]
        except FileNotFoundError:
            return {}
    else:
        names = [f"{c}.json" for c in customers]
    out = {}
    for name in names:
        try:
            with open(os.path.join(record_dir(state_dir), name), encoding="utf-8") as fh:
                rec = CustomerRuntime.from_json(fh.read())
            out[rec.customer] = rec
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return out


def users_of(records: Mapping[str, CustomerRuntime]) -> dict[str, str]:
    return {c: r.user for c, r in records.items() if r.user}
