"""`hostctl apply`: plan on the control side, hand the engine a job, run it in-process.

Loading, validating, rendering and planning happen here (``pipeline.py``);
everything that changes the server is the engine's (``hostctl/engine/core/apply.py``),
the same code ``deploy`` ships to remote servers. ``job`` turns a prepared plan
into the engine's ``Job``: the host's paths and nginx commands, the file
changes, the customers the read-back holds back, the users vassals need, each
customer's runtime record (directories, cgroup and limits) and the probes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from hostctl.render import cgroups, layout
from hostctl.engine import dirs, history, isolation, lock, nginx, probe, vetting
from hostctl.engine.core import apply as engine_apply
from hostctl.engine.core.accounts import DEFAULT_NGINX_USER
from hostctl.engine.core import job as engine_job
from hostctl.engine.core import probe as engine_probe
from hostctl.engine.core.runtime import CustomerRuntime, Directory, HostRuntime
from hostctl.errors import HostctlError, from_engine
from hostctl.engine.owners import Owners
from hostctl.inventory.spec import Inventory
from hostctl.inventory.schema import Settings
from hostctl.engine import pipeline
from hostctl.engine.pipeline import Prepared
from hostctl.plan.diff import Plan
from hostctl.plan import quarantine
from hostctl.plan.quarantine import Rejection, changed_customers

Say = Callable[[str], None]


@dataclass
class ApplyResult:
    plan: Plan
    messages: list[str] = field(default_factory=list)
    owners: Owners | None = None
    isolation: "isolation.IsolationPlan | None" = None  # users created, cgroup changes made
    rejections: list[Rejection] = field(default_factory=list)  # quarantined customers (exit 1)


def paths(settings: Settings) -> engine_job.Paths:
    return engine_job.Paths(settings.emperor_dir, settings.nginx_dir, settings.run_dir, settings.log_dir, settings.state_dir)


nginx_of = nginx.engine_nginx


def _dirs(specs: list[layout.DirSpec], user: str | None, per_customer: bool, root: bool,
          nginx_group: str | None) -> tuple[Directory, ...]:
    """``layout``'s directories with owners by name, resolved by the engine where it runs (None: leave as is).

    A group ``@USER`` is USER's primary group (the customer's). Not root: nothing changes hands.
    """
    def name(who: str, is_group: bool) -> str | None:
        if who == "root":
            return "root"
        if who == "nginx":
            return nginx_group or ((f"@{user}" if per_customer else None) if user else "root")
        if not per_customer or user is None:
            return None
        return f"@{user}" if is_group else user

    if not root:
        return tuple(Directory(s.path, s.mode) for s in specs)
    return tuple(Directory(s.path, s.mode, name(s.owner, False), name(s.group, True)) for s in specs)


def customer_dirs(settings: Settings, per_customer: bool, root: bool, user: str, nginx_group: str | None,
                  customer: str, tmp_keep: tuple[str, ...] | None = None) -> tuple[Directory, ...]:
    """A customer's socket and log directories, owned as ``layout`` says (root's where a root process writes),
    and its private /tmp's (``tmp_keep``: see ``privatetmp.customer_keep``)."""
    return _dirs(layout.customer_dirs(settings, customer, tmp_keep), user, per_customer, root, nginx_group)



def runtime_records(inv: Inventory, per_customer: bool, root: bool, nginx_group: str | None,
                    h: cgroups.Hierarchy | None) -> tuple[tuple[CustomerRuntime, ...], HostRuntime]:
    """Every customer's runtime record, and the host's (base directories, cgroup parents)."""
    s = inv.settings
    records = []
    for c in inv.customers:
        cg = cgroups.customer_cgroup(h, c.name, c.limits) if h is not None and h.version is not None else None
        user = c.user if per_customer else None
        records.append(CustomerRuntime(c.name, user, customer_dirs(s, per_customer, root, c.user, nginx_group, c.name,
                                                                     dirs.tmp_keep(s, per_customer, c)),
                                       None if cg is None else engine_job_cgroup(cg)))
    base = tuple(Directory(d, 0o755) for d in (s.emperor_dir, s.nginx_dir, s.run_dir, s.log_dir))
    shared = _dirs(layout.shared_dirs(s), None, per_customer, root, nginx_group)
    parents = tuple(cgroups.customer_dirs(h)) if h is not None else ()
    return tuple(records), HostRuntime(base, parents, shared)


def apply_limits(root) -> tuple["isolation.IsolationPlan", list[str]]:  # type: ignore[no-untyped-def]
    """`limits --apply`: the directory and cgroup part of apply. After a reboot the cgroups are gone (vassals
    refuse to start without them), and so is ``run_dir`` when it is a tmpfs (vassals cannot bind their sockets).

    The directories are the runtime records' (``runtime_records``), made by the engine's ``runtime.ensure_all``:
    the same paths, modes and owners as apply, deploy and the boot-time ``restore``.
    """
    from hostctl.engine.core import runtime

    inv, owners = pipeline.load_checked(root, host_checks=False)
    ident = owners.identity
    records, host = runtime_records(inv, ident.per_customer, owners.root, ident.nginx_group, ident.cgroup)
    with from_engine():
        runtime.ensure_base(host.dirs)
        messages, broken = runtime.ensure_all(host, records)
    plan = isolation.prepare(inv, owners)
    messages += isolation.execute(plan)
    if broken:  # the others' directories and limits are in place
        raise HostctlError("\n".join(messages + [f"{c}: its directories could not be made: {why}" for c, why in sorted(broken.items())]))
    return plan, messages


def engine_job_cgroup(cg):
    return cg if not cg.notes else type(cg)(cg.customer, cg.dirs, cg.writes)  # notes are for the operator, not the record


def vassal_sockets(settings: Settings, changes) -> dict[str, str]:
    """Each changed vassal's socket, which the engine waits for after the Emperor starts it."""
    return {c.path: layout.app_paths(settings, c.customer, c.app).socket for c in changes if c.kind == "vassal"}


def probe_targets(inv: Inventory, customers) -> tuple[engine_probe.Target, ...]:
    return tuple(probe.targets(inv, customers))


def job(prepared: Prepared, *, readback: bool = True, probe_changed: bool = True, lock_timeout: float = 60.0,
        create_users: bool = False, source: str = "apply") -> engine_job.Job:
    """The engine's job for a prepared local plan."""
    inv, plan, owners = prepared.inventory, prepared.plan, prepared.owners
    s = inv.settings
    changed = changed_customers(plan)
    held = quarantine.held_back(inv.held)  # broken inventory files: their live files stay
    rejections = tuple(held) + (tuple(vetting.rendered_problems(prepared, changed)) if readback and not plan.empty else ())
    per_customer = owners.identity.per_customer
    records, host = runtime_records(inv, per_customer, owners.root, owners.identity.nginx_group, owners.identity.cgroup)
    wanted = tuple(sorted({c.user for c in inv.customers})) if per_customer else ()
    return engine_job.Job(
        paths=paths(s), nginx=nginx_of(s, prepared.env), listen=s.nginx.listen, emperor_freq=s.emperor.freq,
        lock_timeout=lock_timeout, changes=plan.changes, manifest=plan.manifest, rejections=rejections,
        sockets=vassal_sockets(s, plan.changes),
        probes=probe_targets(inv, changed) if probe_changed and not plan.empty else (),
        users=wanted, create_users=create_users, home_dir=s.isolation.home_dir,
        uid_range=(s.isolation.uid_min, s.isolation.uid_max),
        vassal_groups={c.name: c.user for c in inv.customers} if per_customer else {},
        nginx_user=DEFAULT_NGINX_USER, nginx_group=owners.identity.nginx_group,
        runtime=records, host_runtime=host, customers=tuple(sorted({c.name for c in inv.customers} | set(inv.held))),
        provenance=engine_job.Provenance(source, inventory=history.snapshot_inventory(inv.root) if not plan.empty else {}),
    )


def execute(prepared: Prepared, say: Say = lambda _: None, *, readback: bool = True, probe_changed: bool = True,
            create_users: bool = False, check=None) -> ApplyResult:
    """Apply ``prepared.plan`` through the engine. The caller holds the apply lock."""
    plan = prepared.plan
    if plan.conflicts:
        lines = "\n".join(f"  {c.path}: {c.reason}" for c in plan.conflicts)
        raise HostctlError(f"files hostctl did not create are in the way; nothing was written:\n{lines}")
    work = job(prepared, readback=readback, probe_changed=probe_changed, create_users=create_users)
    with from_engine():
        done = engine_apply.execute_locked(work, check)
    iso = prepared.isolation
    if iso is not None:
        iso = isolation.IsolationPlan(iso.hierarchy, tuple(done.cgroup_changes), iso.notes, tuple(done.created_users and iso.users))
    result = ApplyResult(done.plan, done.messages + done.notes, prepared.owners, iso, done.rejections)
    return result


def apply(root: str, lock_timeout: float, say: Say = lambda _: None, create_users: bool = False) -> ApplyResult:
    """Load, plan and apply under the apply lock (so the plan reflects the state it changes).

    ``create_users``: create missing customer users first (root, per-customer mode).
    """
    with pipeline.gc_paused():
        inv, owners = pipeline.load_checked(root, missing_users_ok=create_users)
        with from_engine(), lock.exclusive(layout.lock(inv.settings), lock_timeout, say):
            prepared = pipeline.prepare_loaded(inv, owners)
            result = execute(prepared, say, create_users=create_users)
            if owners.missing_users:  # the new users' ids, for what is printed
                _, result.owners = pipeline.load_checked(root)
            return result
