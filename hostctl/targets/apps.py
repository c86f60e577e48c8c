"""`hostctl run`, `restart` and `release`: what to ask of a customer's server, and asking it.

``request`` turns the inventory into the agent's request for one app (pure but
for the effective uid that decides per-customer users locally); ``perform``
hands it to ``appagent`` in this process for a one-server inventory, or, for a
multi-host one, runs ``appagent``'s source with the server's ``python3 -c`` over
SSH (as ``status --host`` runs its probe), streaming the server's output back.
"""

from __future__ import annotations

import io
import json
import os
import shlex
import stat
import sys
import time
from pathlib import Path
from typing import IO, Callable

from hostctl.engine import appagent, owners, probe
from hostctl.errors import HostctlError
from hostctl.inventory import placement
from hostctl.inventory.schema import Settings
from hostctl.inventory.spec import AppSpec, CustomerSpec, Inventory
from hostctl.render import layout, lifecycle
from hostctl.render.identity import host_identity

RUN_TIMEOUT = 24 * 3600


def customer_of(inv: Inventory, name: str) -> CustomerSpec:
    customer = inv.customer(name)
    if customer is None:
        known = ", ".join(c.name for c in inv.customers[:10])
        raise HostctlError(f"no customer {name!r} in the inventory (customers: {known or 'none'})")
    return customer


def apps_of(customer: CustomerSpec, app: str | None, one: bool = False) -> list[AppSpec]:
    """The customer's apps, or only ``app``; ``one``: exactly one app is needed."""
    if app is not None:
        found = [a for a in customer.apps if a.name == app]
        if not found:
            raise HostctlError(f"customer {customer.name!r} has no app {app!r} (apps: {', '.join(a.name for a in customer.apps)})")
        return found
    if one and len(customer.apps) > 1:
        raise HostctlError(f"customer {customer.name!r} has apps {', '.join(a.name for a in customer.apps)}: choose one with --app")
    return list(customer.apps)


def target_host(inv: Inventory, customer: CustomerSpec, host: str | None) -> str | None:
    """Where to act: None for this machine (a one-server inventory), else a host of hostctl.yaml."""
    if not inv.settings.hosts:
        if host is not None:
            raise HostctlError("--host needs a multi-host inventory (hosts: in hostctl.yaml)")
        return None
    name = host or customer.host
    if name not in inv.settings.hosts:
        raise HostctlError(f"host {name!r} is not in hostctl.yaml's hosts")
    return name


def host_settings(inv: Inventory, host: str | None) -> Settings:
    return inv.settings if host is None else placement.host_settings(inv.settings, inv.settings.hosts[host])


def per_customer(inv: Inventory, host: str | None, euid: int | None = None) -> bool:
    if host is not None:
        return host_identity(inv.settings, host).per_customer
    mode = inv.settings.isolation.users
    return mode == "per-customer" or (mode == "auto" and (os.geteuid() if euid is None else euid) == 0)


def request(inv: Inventory, customer: CustomerSpec, app: AppSpec, host: str | None, op: str,
            euid: int | None = None) -> dict:
    """What the agent needs to act on ``app`` on ``host`` (None: here)."""
    settings = host_settings(inv, host)
    cfg = app.config
    separate = per_customer(inv, host, euid)
    cg = settings.cgroup
    mode = cg.mode if separate or cg.mode != "auto" else "off"
    workdir, venv = lifecycle.workdirs(cfg)
    paths = layout.app_paths(settings, customer.name, app.name)
    req = {
        "op": op, "customer": customer.name, "app": app.name,
        "user": customer.user if separate else None,
        "cgroup": {"mode": mode, "parent": cg.parent, "v1_root": cg.v1_root, "v2_root": cg.v2_root,
                   "required": mode in ("v1", "v2")},
        "env": dict(cfg.env), "workdir": workdir, "venv": venv,
        "vassal": paths.vassal, "stats": paths.stats, "emperor_stats": layout.emperor_stats(settings),
    }
    if separate:  # the account rule apply uses (engine/core/accounts.py): here in full, on the server for its own users
        iso = settings.isolation
        req["account_rule"] = {"uid_min": iso.uid_min, "uid_max": iso.uid_max, "nginx_user": owners.DEFAULT_NGINX_USER,
                               "nginx_group": settings.nginx.group}
        if host is None:
            mine = [p for p in owners.account_problems(inv, owners.nginx_group(inv, True)) if p.file == customer.file]
            if mine:
                raise HostctlError(f"{mine[0]}; not acting as that account")
    return req


def probe_request(settings: Settings, app: AppSpec) -> dict | None:
    """The app's health check after a release switch: its probe through nginx (None: no probe set)."""
    p = app.config.probe
    if p is None:
        return None
    address, port = probe.address(settings.nginx.listen)
    return {"address": address, "port": port, "host": probe.host_header(app.config.domains[0]),
            "path": p.path, "status": p.status, "timeout": p.timeout}


# --- performing --------------------------------------------------------------------------


def agent_command(req: dict) -> str:
    """The shell command that runs the agent on a server: its whole source and the request."""
    source = Path(appagent.__file__).read_text(encoding="utf-8")
    return f"python3 -c {shlex.quote(source)} {shlex.quote(appagent.encode(req))}"


def perform(inv: Inventory, host: str | None, req: dict, payload: bytes | None = None,
            out: IO[str] | None = None, err: IO[str] | None = None) -> tuple[int, dict]:
    """Run ``req`` here or on ``host``; (exit status, the agent's result). Output streams to out/err."""
    out = out or sys.stdout
    err = err or sys.stderr
    if host is None:
        try:
            return appagent.handle(req, io.BytesIO(payload or b""))
        except appagent.AgentError as exc:
            raise HostctlError(str(exc)) from None
    collected: list[str] = []
    on_out: Callable[[str], None] = (lambda text: (out.write(text), out.flush())) if req["op"] == "run" else collected.append
    status = stream(inv, host, agent_command(req), payload, on_out, lambda text: (err.write(text), err.flush()),
                    RUN_TIMEOUT)
    if req["op"] == "run":
        return status, {}
    _, mark, tail = "".join(collected).rpartition(appagent.MARK)
    try:
        result = json.loads(tail) if mark else {}
    except ValueError:
        result = {}
    if status != 0 and "error" in result:
        raise HostctlError(f"host {host!r}: {result['error']}")
    if not mark:
        raise HostctlError(f"host {host!r}: the agent exited {status} without an answer:\n{''.join(collected)[-800:]}")
    return status, result


def stream(inv: Inventory, host: str, command: str, payload: bytes | None,
           on_out: Callable[[str], object], on_err: Callable[[str], object], timeout: float) -> int:
    """Run ``command`` on ``host`` over SSH, ``payload`` on its stdin, output handed over as it arrives."""
    import codecs

    from hostctl.targets import ssh

    decode_out, decode_err = (codecs.getincrementaldecoder("utf-8")(errors="replace") for _ in range(2))
    conn = ssh.connect(inv.settings.hosts[host], str(inv.root), host)
    try:
        return ssh.stream(conn, command, payload, lambda data: on_out(decode_out.decode(data)),
                          lambda data: on_err(decode_err.decode(data)), timeout)
    finally:
        conn.close()


# --- releases ----------------------------------------------------------------------------

EXCLUDED = {".git", "__pycache__", ".venv", ".hg", ".svn"}


def released_app(customer: CustomerSpec, app: str | None) -> AppSpec:
    """The app to release: ``app``, or the customer's only app with ``root:``."""
    candidates = apps_of(customer, app) if app else [a for a in customer.apps if a.config.root]
    if app is None and len(candidates) != 1:
        names = ", ".join(a.name for a in candidates) or "none"
        raise HostctlError(f"customer {customer.name!r} has {len(candidates)} apps with 'root:' ({names}): choose one with --app")
    (one,) = candidates
    if not one.config.root:
        raise HostctlError(f"{one.id} has no 'root:' in {customer.file}; releases go to <root>/releases/<id> (see the README's Apps section)")
    return one


def release_request(inv: Inventory, customer: CustomerSpec, app: AppSpec, host: str | None, op: str,
                    euid: int | None = None) -> dict:
    from hostctl.inventory.schema import Release

    settings = host_settings(inv, host)
    cfg = app.config
    rel = cfg.release or Release()
    req = request(inv, customer, app, host, op, euid)
    req.update(root=cfg.root, python=settings.emperor.python, wsgi=cfg.wsgi, keep=rel.keep,
               hooks={"build": rel.build, "before_switch": rel.before_switch, "after_switch": rel.after_switch},
               probe=probe_request(settings, app),
               static=sorted(cfg.static.values()),
               group=(settings.nginx.group or "www-data") if req["user"] else None)
    return req


def split_source(source: str) -> tuple[str, str | None, bool]:
    """(location, git ref, is git): a directory, or a git URL/path with an optional ``@REF``."""
    if os.path.isdir(source) and not os.path.isdir(os.path.join(source, ".git")):
        return source, None, False
    location, at, ref = source.rpartition("@")
    rest = location.split("://", 1)[-1]  # ssh://git@host/x.git: that '@' is the user's
    if at and ref and ":" not in ref and ("/" in rest or os.path.exists(location)):
        return location, ref, True
    return source, None, True


def package(source: str) -> tuple[bytes, str]:
    """The code as a gzipped tar (what the agent unpacks as the customer) and where it came from."""
    import subprocess
    import tarfile
    import tempfile

    location, ref, is_git = split_source(source)
    if not is_git:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=1) as tar:
            top = os.open(location, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)  # the operator's path
            try:
                pack_tree(tar, top, location, "")
            finally:
                os.close(top)
        return buffer.getvalue(), f"directory {os.path.abspath(location)}"
    with tempfile.TemporaryDirectory(prefix="hostctl-release-") as tmp:
        clone = subprocess.run(["git", "clone", "--quiet", "--no-checkout", location, tmp], capture_output=True, text=True)
        if clone.returncode != 0:
            raise HostctlError(f"git clone {location} failed: {clone.stderr.strip()[-500:]}")
        archive = subprocess.run(["git", "-C", tmp, "archive", "--format=tar.gz", ref or "HEAD"], capture_output=True)
        if archive.returncode != 0:
            raise HostctlError(f"git archive {ref or 'HEAD'} of {location} failed: {archive.stderr.decode(errors='replace').strip()[-500:]}")
        commit = subprocess.run(["git", "-C", tmp, "rev-parse", "--short", f"{ref or 'HEAD'}^{{commit}}"],
                                capture_output=True, text=True).stdout.strip()
    return archive.stdout, f"git {location} {ref or 'HEAD'} ({commit})"


def pack_tree(tar, dir_fd: int, location: str, prefix: str) -> None:
    """Add what is in the directory ``dir_fd`` to ``tar`` under ``prefix``, never following a link.

    hostctl packs as root, and the source may be a directory the customer writes: packing by
    path (``tarfile.add``) lets it swap a directory or file for a symlink between the check and
    the read, and root would pack (into the customer's own release) whatever the link points to.
    Every entry is opened from its directory's descriptor with ``O_NOFOLLOW|O_NONBLOCK`` and must
    be what ``lstat`` saw; links are packed as links."""
    import tarfile

    for name in sorted(os.listdir(dir_fd)):
        if name in EXCLUDED:
            continue
        arcname, where = prefix + name, os.path.join(location, prefix + name)
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            if stat.S_ISLNK(st.st_mode):
                info = tarfile.TarInfo(arcname)
                info.type, info.linkname, info.mtime = tarfile.SYMTYPE, os.readlink(name, dir_fd=dir_fd), int(st.st_mtime)
                tar.addfile(info)
                continue
            if not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
                raise HostctlError(f"{where} is not a file, directory or link (a FIFO, socket or device); not packed")
            flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | (os.O_DIRECTORY if stat.S_ISDIR(st.st_mode) else 0)
            fd = os.open(name, flags, dir_fd=dir_fd)
        except OSError as exc:
            raise HostctlError(f"{where} changed while it was packed ({exc.strerror}); try again") from None
        try:
            now = os.fstat(fd)
            if (now.st_dev, now.st_ino, stat.S_IFMT(now.st_mode)) != (st.st_dev, st.st_ino, stat.S_IFMT(st.st_mode)):
                raise HostctlError(f"{where} changed while it was packed; try again")
            info = tarfile.TarInfo(arcname)
            info.mode, info.mtime = stat.S_IMODE(now.st_mode), int(now.st_mtime)
            if stat.S_ISDIR(now.st_mode):
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
                pack_tree(tar, fd, location, arcname + "/")
            else:
                with os.fdopen(os.dup(fd), "rb") as fh:
                    info.size = now.st_size
                    try:
                        tar.addfile(info, fh)
                    except OSError as exc:  # it shrank while read
                        raise HostctlError(f"{where} changed while it was packed ({exc}); try again") from None
        finally:
            os.close(fd)


def release_hosts(inv: Inventory, customer: CustomerSpec, hosts: tuple[str, ...]) -> list[str | None]:
    """Every server the customer is placed on (or the given ones); [None] for this machine."""
    if not inv.settings.hosts:
        if hosts:
            raise HostctlError("--host needs a multi-host inventory (hosts: in hostctl.yaml)")
        return [None]
    placed = [customer.host] if customer.host else []
    for name in hosts:
        if name not in placed:
            raise HostctlError(f"customer {customer.name!r} is not placed on host {name!r} (it is on: {', '.join(placed)})")
    return list(hosts) or placed


def on_hosts(inv: Inventory, hosts: list[str | None], make: Callable[[str | None], dict], payload: bytes | None,
             err: IO[str]) -> dict[str | None, tuple[int, dict] | BaseException]:
    """Run a request on every host at once (one thread each); the server's output prefixed with its name."""
    from hostctl.targets import ssh

    if hosts == [None]:
        try:
            return {None: perform(inv, None, make(None), payload, err=err)}
        except HostctlError as exc:
            return {None: exc}

    def one(host: str) -> tuple[int, dict]:
        return perform(inv, host, make(host), payload, err=_Prefixed(err, f"[{host}] "))

    return dict(ssh.each_host([h for h in hosts if h], one))


class _Prefixed(io.TextIOBase):
    """Whole lines to ``target``, each prefixed (hosts write at once)."""

    def __init__(self, target: IO[str], prefix: str) -> None:
        self.target, self.prefix, self.partial = target, prefix, ""

    def write(self, text: str) -> int:
        lines = (self.partial + text).split("\n")
        self.partial = lines.pop()
        for line in lines:
            self.target.write(self.prefix + line + "\n")
        return len(text)

    def flush(self) -> None:
        self.target.flush()


def release_id(now: float | None = None) -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
