"""What a deploy sends to a host and how it reads the answer: pure, no SSH here.

Two round trips at most per host. ``read_command`` asks for the host's
manifest plus the mode and sha256 of every vassal and server block there;
``parse_state`` turns the answer into the ``Actual`` that ``plan.make_plan``
compares hashes against. ``bundle`` packs the files a plan writes into one
gzipped tar together with ``deploy.sh`` (rendered from
``templates/remote-deploy.sh.j2``), which renames them into place in the order
apply uses locally, runs nginx -t and the reload there, and writes the manifest.
"""

from __future__ import annotations

import io
import os
import shlex
import tarfile
from dataclasses import dataclass, field
from typing import Iterable, Mapping

import jinja2

from hostctl.engine import reload_wait
from hostctl.engine.apply import _intent as intent_manifest  # the same crash-safe intent as a local apply
from hostctl.errors import HostctlError
from hostctl.inventory.schema import Settings
from hostctl.plan.diff import Change, Plan
from hostctl.plan.files import Actual, LiveFile, RenderedFile
from hostctl.plan.manifest import Entry, Manifest, sha256
from hostctl.render import layout, ondemand, templates
from hostctl.render.identity import Identity

SCRIPT_TEMPLATE = "remote-deploy.sh.j2"
MODES_MARK = "@@hostctl-modes@@"
SHA_MARK = "@@hostctl-sha256@@"
STAGE = ".hostctl-deploy"  # under state_dir: the script and the manifests
NGINX_STAGE = ".hostctl-deploy-nginx"  # under nginx_dir: new server blocks (same file system)
NGINX_BACKUP = ".hostctl-backup-nginx"  # under nginx_dir: the old ones, until nginx -t passed
VASSAL_STAGE = ".hostctl-deploy-vassals"  # under emperor_dir: new vassals
EXIT_NGINX_TEST = 3
EXIT_USERS = 4
EXIT_RELOAD = 5
EXIT_LOCKED = 7
EXIT_CHANGED = 8
LOCK = "deploy.lock"  # under state_dir
LOCK_WAIT = 120  # seconds
# The waits that make a deploy live when it returns (stdlib only), sent along and run by the host's python3.
RELOAD_WAIT_SOURCE = open(reload_wait.__file__, encoding="utf-8").read()


def script_environment(env: jinja2.Environment) -> jinja2.Environment:
    """The inventory's template environment plus ``sh`` (shell quoting) for scripts run on hosts."""
    env = env.overlay()
    env.filters["sh"] = shlex.quote
    env.filters["basename"] = os.path.basename
    return env


# --- reading a host ---------------------------------------------------------------


def read_command(settings: Settings) -> str:
    """One shell command printing the manifest, then mode and sha256 of every vassal (and companion) and server block."""
    q = shlex.quote
    vassal, companion = f"*{layout.VASSAL_EXT}", ondemand.companion(f"*{layout.VASSAL_EXT}")
    files = (f"{{ find {q(settings.emperor_dir)} -maxdepth 1 -type f \\( -name '{vassal}' -o -name '{companion}' \\) -print0; "
               f"find {q(settings.nginx_dir)} -maxdepth 1 -type f -name '*{layout.NGINX_EXT}' -print0; }} 2>/dev/null")
    return (f"{{ cat {q(layout.manifest(settings))} 2>/dev/null || true; }}; echo; echo {MODES_MARK}; "
            f"{files} | xargs -0 -r stat -c '%a %n' | LC_ALL=C sort; echo {SHA_MARK}; "
            f"{files} | xargs -0 -r sha256sum | LC_ALL=C sort")


def digest_command(settings: Settings) -> str:
    """``read_command``'s answer reduced to its sha256: 64 bytes tell whether a host is exactly as expected."""
    return f"{{ {read_command(settings)}; }} | sha256sum"


def listing(actual: Actual) -> str:
    """The text ``read_command`` prints for a host in state ``actual`` (files carrying digests and modes)."""
    manifest = actual.manifest.to_json() if actual.manifest.files else ""
    modes = "".join(sorted(f"{f.mode:o} {p}\n" for p, f in actual.files.items()))  # as LC_ALL=C sort orders them
    sums = "".join(sorted(f"{f.sha256()}  {p}\n" for p, f in actual.files.items()))
    return f"{manifest}\n{MODES_MARK}\n{modes}{SHA_MARK}\n{sums}"


def expected(desired: Mapping[str, RenderedFile]) -> Actual:
    """A host's state right after a deploy of ``desired``: its files, and the manifest listing them."""
    manifest = Manifest({p: Entry(sha256(f.content), f.kind, f.customer, f.app) for p, f in desired.items()})
    files = {p: LiveFile(None, f.mode, digest=manifest.files[p].sha256) for p, f in desired.items()}
    return Actual(manifest, files)


def expected_digest(desired: Mapping[str, RenderedFile]) -> str:
    """What ``digest_command`` answers on a host that already has exactly ``desired`` (and nothing else of ours)."""
    return sha256(listing(expected(desired)))


def parse_state(output: str, where: str) -> Actual:
    """The answer to ``read_command`` as an ``Actual`` of hashes (``where`` names the host in errors)."""
    try:
        manifest_text, rest = output.split(f"\n{MODES_MARK}\n", 1)
        modes_text, sha_text = rest.split(f"{SHA_MARK}\n", 1)
    except ValueError:
        raise HostctlError(f"{where}: unexpected answer while reading the state: {output[:300]!r}") from None
    try:
        manifest = Manifest.from_json(manifest_text) if manifest_text.strip() else Manifest()
    except (ValueError, KeyError, TypeError) as exc:
        raise HostctlError(f"{where}: the manifest is damaged ({exc}; it begins {manifest_text[:80]!r}); "
                           "move it aside to let hostctl rebuild it") from exc
    modes: dict[str, int] = {}
    for line in modes_text.splitlines():
        mode, _, path = line.partition(" ")
        if path and mode.isdigit():
            modes[path] = int(mode, 8)
    files: dict[str, LiveFile] = {}
    for line in sha_text.splitlines():
        digest, sep, path = line.partition("  ")
        if sep and len(digest) == 64 and not digest.startswith("\\"):
            files[path] = LiveFile(None, modes.get(path), digest=digest)
    return Actual(manifest, files)


# --- writing a host ---------------------------------------------------------------


@dataclass(frozen=True)
class Bundle:
    """One deploy to one host: the command to run and the gzipped tar it reads on stdin."""

    command: str
    payload: bytes
    uploaded: list[str] = field(default_factory=list)  # live paths whose new content is in the tar
    script: str = ""


@dataclass(frozen=True)
class RemoteDir:
    """A directory the deploy script makes, as ``layout`` says (names instead of numbers)."""

    path: str
    owner: str | None  # user name; None: leave as is (not per-customer)
    group: str | None
    mode: str  # octal
    root_owned: bool  # root takes it over from a customer (older layout): cleaned like securefs.take_back
    child: str | None  # its customer-owned subdirectory, kept when cleaning

    @property
    def chown(self) -> str:
        """The argument of ``chown -h`` ('' when nothing changes hands)."""
        return (self.owner or "") + (f":{self.group}" if self.group else "")


def remote_dirs(settings: Settings, customers: list[str], users: Mapping[str, str], per_customer: bool,
                nginx_group: str | None) -> list[RemoteDir]:
    """``layout``'s directories for ``customers``, with owners by name (pure)."""
    def name(who: str, customer: str | None) -> str | None:
        if who == "root":
            return "root"
        if who == "nginx":
            return nginx_group or ("root" if customer is None else (users[customer] if per_customer else None))
        return users[customer] if per_customer and customer else None

    out = []
    specs = [(s, None) for s in layout.shared_dirs(settings)]
    specs += [(s, c) for c in customers for s in layout.customer_dirs(settings, c)]
    for spec, customer in specs:
        owner = name(spec.owner, customer) if per_customer or spec.owner == "root" else None
        group = name(spec.group, customer) if per_customer or spec.group != "customer" else None
        child = next((os.path.basename(o.path) for o, _ in specs if os.path.dirname(o.path) == spec.path), None)
        out.append(RemoteDir(spec.path, owner, group, f"{spec.mode:o}", spec.owner == "root" and per_customer, child))
    return out


def _staged(settings: Settings, change: Change) -> str:
    stage = NGINX_STAGE if change.kind == "nginx" else VASSAL_STAGE
    base = settings.nginx_dir if change.kind == "nginx" else settings.emperor_dir
    return os.path.join(base, stage, os.path.basename(change.path))


def add_member(tar: tarfile.TarFile, path: str, data: bytes, mode: int, group: str = "root") -> None:
    info = tarfile.TarInfo(path.lstrip("/"))
    info.size, info.mode, info.mtime = len(data), mode, 0
    info.uid = info.gid = 0
    info.uname, info.gname = "root", group
    tar.addfile(info, io.BytesIO(data))


def bundle(host: str, settings: Settings, plan: Plan, old: Manifest, identity: Identity,
           users: Mapping[str, str], env: jinja2.Environment, basis: str) -> Bundle:
    """Pack ``plan`` for ``host`` (``settings`` are that host's; ``users`` maps customers to Unix users).

    ``basis`` is the digest of the state the plan was made from: the script holds the
    host's deploy lock and changes nothing unless the host still has that state.
    """
    writes = [c for c in plan.changes if c.action != "delete" and not c.mode_only]
    toggled = ondemand.toggled(plan)
    chmods = [c for c in plan.changes if c.mode_only]
    servers = [c for c in plan.changes if c.kind == "nginx" and not c.mode_only]
    changed_customers = sorted({c.customer for c in plan.changes if c.action != "delete"})
    stage = os.path.join(settings.state_dir, STAGE)
    per_customer = identity.per_customer
    dirs = remote_dirs(settings, changed_customers, users, per_customer, identity.nginx_group) if changed_customers else []
    vassal_users = sorted({users[c.customer] for c in writes if c.kind == "vassal"}) if per_customer else []
    context = dict(
        host=host, stage=stage, manifest=layout.manifest(settings),
        nginx_stage=os.path.join(settings.nginx_dir, NGINX_STAGE),
        nginx_backup=os.path.join(settings.nginx_dir, NGINX_BACKUP),
        vassal_stage=os.path.join(settings.emperor_dir, VASSAL_STAGE),
        nginx_dir=settings.nginx_dir, emperor_dir=settings.emperor_dir,
        users=vassal_users, customer_dirs=dirs,
        staged_dirs=sorted({os.path.dirname(_staged(settings, c)) for c in writes} | {stage}),
        updates=[dict(target=c.path, staged=_staged(settings, c)) for c in writes if c.action == "update"],
        server_changes=bool(servers),
        server_created=[c.path for c in servers if c.action == "create"],
        server_replaced=[c.path for c in servers if c.action != "create"],
        server_written=any(c.action != "delete" for c in servers),
        server_removed=[c.path for c in servers if c.action == "delete"],
        vassals_written=any(c.kind != "nginx" for c in writes),
        vassals_reloaded=[os.path.basename(c.path) for c in writes
                          if c.kind == "vassal" and c.action == "update" and c.path not in toggled],
        new_sockets=[(layout.app_paths(settings, c.customer, c.app).socket, os.path.basename(c.path)) for c in writes
                     if c.kind == "vassal" and (c.action == "create" or c.path in toggled)],
        reload_wait_source=RELOAD_WAIT_SOURCE, nginx_pid_file=settings.nginx.pid_file or "",
        toggled=toggled,
        sockets_written=any(c.kind == ondemand.KIND for c in writes),
        vassals_removed=[c.path for c in plan.changes if c.kind != "nginx" and c.action == "delete"],
        chmods=[dict(path=c.path, mode=f"{c.mode:o}") for c in chmods],
        test_command=settings.nginx.test_command or "nginx -t -q",
        reload_command=settings.nginx.reload_command or "systemctl reload nginx",
        uwsgi=settings.emperor.binary, emperor_stats=layout.emperor_stats(settings),
        basis=basis, read_command=read_command(settings),
    )
    script = templates.render(templates.get(env, SCRIPT_TEMPLATE), **context)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=6, format=tarfile.GNU_FORMAT) as tar:
        for change in writes:
            assert change.after is not None and change.mode is not None
            group = users[change.customer] if per_customer and change.kind == "vassal" else "root"
            add_member(tar, _staged(settings, change), change.after.encode("utf-8"), change.mode, group)
        add_member(tar, os.path.join(stage, "intent.json"), intent_manifest(old, plan).to_json().encode(), 0o600)
        add_member(tar, os.path.join(stage, "manifest.json"), plan.manifest.to_json().encode(), 0o600)
        add_member(tar, os.path.join(stage, "deploy.sh"), script.encode(), 0o700)
    q = shlex.quote
    base = " ".join(q(p) for p in (settings.emperor_dir, settings.nginx_dir, settings.run_dir, settings.log_dir))
    stale = " ".join(q(p) for p in (stage, context["nginx_stage"], context["nginx_backup"], context["vassal_stage"]))
    lock = q(os.path.join(settings.state_dir, LOCK))
    # one deploy at a time per host: the lock (fd 9) is taken before anything is unpacked and
    # held by deploy.sh (exec keeps the descriptor) until it exits
    command = (f"umask 022 && mkdir -p -- {base} && mkdir -p -m 700 -- {q(settings.state_dir)} && "
               f"exec 9>>{lock} && {{ flock -w {LOCK_WAIT} 9 || {{ echo 'hostctl-deploy: another deploy to this host "
               f"holds {lock}'; exit {EXIT_LOCKED}; }}; }} && rm -rf -- {stale} && "
               f"tar -xzpmf - -C / && exec sh {q(os.path.join(stage, 'deploy.sh'))}")
    return Bundle(command, buffer.getvalue(), [c.path for c in writes], script)


def hold_back(plan: Plan, old: Manifest, customers: Iterable[str]) -> Plan:
    """``plan`` without removing ``customers``' files (they keep their manifest entries).

    A customer moving to another host stays where it is until the new host serves it.
    """
    keep = set(customers)
    held = [c for c in plan.changes if c.action == "delete" and c.customer in keep]
    if not held:
        return plan
    changes = tuple(c for c in plan.changes if c not in held)
    entries = dict(plan.manifest.files)
    for change in held:
        entries[change.path] = old.files[change.path]
    return Plan(changes, plan.conflicts, Manifest(entries), plan.unchanged + len(held))
