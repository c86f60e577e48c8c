"""Make this server match a job: the steps that change a server, in the order that keeps it safe.

1. take the server's lock (one apply or deploy at a time) and check that the
   server still has the state the plan was made from (compare-and-swap);
2. the Unix users vassals drop to must exist (or are created with ``create_users``), and
   each must be an account hostctl may give that customer on this server
   (``accounts.py``): a customer whose account is refused is held back, nothing
   is written or created for it;
3. base and customer directories, then cgroups and their limits (before any
   vassal can start), recorded in the runtime record for ``restore``;
   A customer whose directories cannot be made (a path that is not a directory
   any more) is held back; the others go ahead;
4. hold back a customer whose new server block names a domain another nginx
   server of this host serves (``nginxdump.py``, from ``nginx -T``); write the
   certificates the job ships (``tlsfiles.py``), then vet the candidate server
   blocks with ``nginx -t`` (``vetting.py``): a
   customer whose blocks fail is held back with its last-known-good files, and
   one whose live blocks fail on their own has them set aside (nginx would not
   load, or start after a reboot, for anyone);
5. record the intent in the manifest (a crash later still knows every file);
6. write server blocks, then run the production ``test_command`` if there is one
   (a failure puts the old server blocks back, and nothing else is written);
7. write vassals and poke the Emperor, which spawns or gracefully reloads
   exactly the vassals whose files changed; reload nginx, only if a server
   block changed; remove vassals of apps that left, poke again;
8. write the final manifest; probe the changed customers that ask for it,
   rolling back those that fail; record the generation and the quarantine;
9. customers that run no app any more: every process they left is killed and
   a removed customer's cgroup goes; customers removed with ``--purge`` lose
   their user and directories (``stopping.py``).
"""

from __future__ import annotations

import grp
import os
import time
from dataclasses import dataclass, field, replace
from typing import Callable

from hostctl.engine.core import accounts, cgroups, emperor, fsops, history, lock, listing, nginx, nginxdump, probe, reload_wait, runtime, stopping, tlsfiles, users, vetting
from hostctl.engine.core.errors import EXIT_CHANGED, EngineError
from hostctl.engine.core.job import Job
from hostctl.engine.core.manifest import Entry, Manifest, sha256
from hostctl.engine.core.plan import Change, Plan, read_file, read_manifest, restrict
from hostctl.engine.core.quarantine import Rejection

Say = Callable[[str], None]
COMPANION_EXT = ".socket"


@dataclass
class Result:
    plan: Plan
    messages: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # things the operator should know (the Emperor did not answer)
    rejections: list[Rejection] = field(default_factory=list)  # held back or rolled back (exit 1)
    cgroup_changes: list[cgroups.CgroupChange] = field(default_factory=list)
    created_users: list[str] = field(default_factory=list)
    generation: int | None = None


def execute(job: Job, say: Say = lambda _: None, check: vetting.Check | None = None) -> Result:
    """Apply ``job`` under the server's lock."""
    with lock.exclusive(job.paths.lock, job.lock_timeout, say):
        return execute_locked(job, check)


def where(job: Job) -> listing.Where:
    return listing.Where(job.paths.emperor_dir, job.paths.nginx_dir, job.paths.state_dir)


def execute_locked(job: Job, check: vetting.Check | None = None) -> Result:
    """Apply ``job``; the caller holds the lock."""
    result = _execute_files(job, check)
    _departures(job, result)
    return result


def _execute_files(job: Job, check: vetting.Check | None) -> Result:
    p = job.paths
    if job.basis is not None and listing.digest(listing.state_text(where(job))) != job.basis:
        raise EngineError("the host changed since it was read (another deploy?); nothing was changed; deploy again", EXIT_CHANGED)
    missing = users.missing(job.users)
    if missing and not job.create_users:
        raise EngineError(f"these Unix users do not exist{_on(job)}: {', '.join(missing)}; nothing was changed "
                          "(create them, or run with --create-users)")
    plan = Plan(job.changes, (), job.manifest)
    result = Result(plan)
    result.created_users = users.create(missing, job.home_dir, *job.uid_range) if missing else []
    result.messages += result.created_users
    job = _hold_refused_accounts(job)
    _ensure_base_dirs(job)
    messages, changes, broken = _runtime(job)
    result.messages += messages
    result.cgroup_changes = list(changes)
    # a customer whose directories cannot be made is held back; the others go ahead
    rejections = list(job.rejections) + [Rejection(c, "its directories", why) for c, why in sorted(broken.items())]

    old_manifest = read_manifest(p.manifest)
    plan = replace(plan, changes=tuple(_with_before(c) for c in plan.changes))
    held = {r.customer for r in rejections}
    rejections += _collisions(job, plan.changes, held)
    held |= {r.customer for r in rejections}
    if job.certs and job.cert_dir and not plan.empty:  # before nginx -t reads them; nginx itself only at the reload below
        written, failed = tlsfiles.install(job.cert_dir, [c for c in job.certs if c.customer not in held])
        if written:
            result.messages.append(f"certificates shipped: {', '.join(written)}")
        rejections += [Rejection(customer, path, f"its certificate cannot be written here: {why}") for customer, (path, why) in sorted(failed.items())]
        held |= set(failed)
    if job.vet and (broken or any(c.kind == "nginx" and c.customer not in held for c in plan.changes)):
        candidates = vetting.Candidates(vetting.live_blocks(p.nginx_dir), plan.changes, plan.manifest)
        rejections += vetting.nginx_problems(candidates, held, check or (lambda blocks: nginx.check(job.nginx, blocks)))
        held |= {r.customer for r in rejections}
        # live blocks that fail on their own (the customer's state is broken) leave nginx's include: its
        # next reload, or start after a reboot, works for everyone else
        vetting.set_aside(p.nginx_dir, p.state_dir, [n for names in candidates.suspended.values() for n in names])
    if plan.empty:
        if plan.manifest != old_manifest:
            _save_manifest(job, plan.manifest)  # e.g. files that vanished by hand drop out
        result.rejections = rejections  # customers held back by the control side (their inventory file) or here
        _save_quarantine(job, result.rejections)
        return result
    plan = restrict(plan, old_manifest, held)
    result.plan, result.rejections = plan, rejections
    if plan.empty:
        _save_quarantine(job, rejections)
        return result

    _save_manifest(job, intent(old_manifest, plan))
    server_changes = [c for c in plan.changes if c.kind == "nginx"]
    vassal_writes = [c for c in plan.changes if c.kind == "vassal" and c.action != "delete"]
    vassal_removals = [c for c in plan.changes if c.kind == "vassal" and c.action == "delete"]
    socket_changes = [c for c in plan.changes if c.kind == "socket"]

    for change in server_changes:
        _write(job, change) if change.action != "delete" else fsops.remove(change.path)
    if server_changes:
        live = nginx.test_live(job.nginx)
        if live is not None and not live.ok:
            _restore(job, server_changes)
            _save_manifest(job, old_manifest)
            raise EngineError(f"`{job.nginx.test_command}` failed{_on(job)}; the previous server blocks were put back and nothing else was written:\n{live.output}")

    stats = p.emperor_stats
    switched = toggled(plan)
    if switched:  # the Emperor reads a companion only when it first sees a vassal
        for path in switched:
            fsops.remove(path)
        if not emperor.wait_released(emperor.read_stats, stats, switched):
            raise EngineError(f"the Emperor did not let go of {', '.join(switched)} in time; run apply again")
        result.messages.append(f"restarted (on-demand mode changed): {', '.join(os.path.basename(s) for s in switched)}")
    for change in socket_changes:  # before the vassals, so a new vassal is seen with its companion
        _write(job, change) if change.action != "delete" else fsops.remove(change.path)
    reloaded = [c for c in vassal_writes if c.action == "update" and not c.mode_only and c.path not in switched]
    old_workers = _running_workers(stats, reloaded)
    for change in vassal_writes:
        _write(job, change)
    if vassal_writes and _poke(job, result):
        _wait_new_vassals(job, stats, [c for c in vassal_writes if c.action == "create" or c.path in switched], result)
        late = reload_wait.wait_exited(old_workers, nudge=lambda: emperor.poke(stats))
        if late:
            result.messages.append(f"still finishing requests on workers with the previous code or settings: {', '.join(late)}")
    if server_changes:
        result.messages.append(nginx.reload(job.nginx))
    for change in vassal_removals:
        fsops.remove(change.path)
    if vassal_removals:
        _poke(job, result)
    for directory in (p.emperor_dir, p.nginx_dir):
        fsops.fsync_dir(directory)
    _save_manifest(job, plan.manifest)

    if job.probes:
        plan = _probe(job, plan, old_manifest, result)
        result.plan = plan
    if job.cert_dir and any(c.kind == "nginx" and c.action == "delete" for c in plan.changes):
        # certificates no live server block names any more (an app or customer left this server)
        keep = {f"{e.customer}_{e.app}" for e in plan.manifest.files.values() if e.kind == "nginx"}
        removed = tlsfiles.prune(job.cert_dir, keep)
        if removed:
            result.messages.append(f"certificates removed: {', '.join(removed)}")
    if not plan.empty:
        result.generation = _record(job, plan).number
    _save_quarantine(job, result.rejections)
    return result


def _collisions(job: Job, changes: tuple[Change, ...], held: set[str]) -> list[Rejection]:
    """Customers whose new server blocks name a domain another nginx server of this host serves (``nginx -T``)."""
    blocks = {c.path: (c.customer, c.after) for c in changes
              if c.kind == "nginx" and c.action != "delete" and not c.mode_only and c.after is not None and c.customer not in held}
    if not blocks or not job.nginx.dump_command:
        return []
    foreign = nginxdump.live_foreign(job.nginx.dump_command, (job.paths.nginx_dir,))
    return [Rejection(customer, path, why) for customer, path, why in nginxdump.collisions(blocks, foreign)]


def _departures(job: Job, result: Result) -> None:
    """Kill what customers that run no app any more left behind; purge those removed with ``--purge``."""
    state = job.paths.state_dir
    host_record = job.host_runtime or runtime.read_host(state)
    host = stopping.Host(tuple(host_record.cgroup_parents), job.paths.run_dir, job.paths.log_dir, job.home_dir,
                         job.uid_range, dict(job.vassal_groups), job.paths.emperor_stats)
    plan = result.plan
    removals = [c for c in plan.changes if c.kind == "vassal" and c.action == "delete"]
    running = {e.customer for e in plan.manifest.files.values() if e.kind == "vassal"}
    present = set(job.customers) if job.customers is not None else {r.customer for r in job.runtime}
    gone = stopping.departed((c.customer for c in removals), running, (r.customer for r in job.rejections))
    users_of: dict[str, str] = {}
    for change in removals:
        user = stopping.user_of_vassal(change.before)
        if user:
            users_of.setdefault(change.customer, user)
    stopping.stop_departed(host, {c: users_of.get(c) for c in gone}, [c.path for c in removals if c.customer in gone],
                           present, result.messages)
    if stopping.record_purges(state, job.purges):
        result.messages += stopping.purge(host, state, present, running)


def _on(job: Job) -> str:
    return f" on host {job.host!r}" if job.host else ""


def _hold_refused_accounts(job: Job) -> Job:
    """``job`` with the customers whose account this server's user database refuses held back
    (a rejection each; their new runtime record, directories and cgroup are not made)."""
    if job.nginx_user is None or not job.vassal_groups:
        return job
    lo, hi = job.uid_range
    refused = accounts.refusals(job.vassal_groups, lo, hi, job.nginx_user, job.nginx_group,
                                read_manifest(job.paths.manifest), job.paths.emperor_dir)
    if not refused:
        return job
    held = tuple(Rejection(c, f"user {job.vassal_groups[c]}", why) for c, why in sorted(refused.items()))
    return replace(job, rejections=job.rejections + held, runtime=tuple(r for r in job.runtime if r.customer not in refused))


def _ensure_base_dirs(job: Job) -> None:
    p = job.paths
    for path in (p.emperor_dir, p.nginx_dir, p.run_dir, p.log_dir):
        os.makedirs(path, mode=0o755, exist_ok=True)
    os.makedirs(p.state_dir, mode=0o700, exist_ok=True)
    for directory in (p.emperor_dir, p.nginx_dir):
        fsops.clean_temp_files(directory)


def _runtime(job: Job) -> tuple[list[str], tuple[cgroups.CgroupChange, ...], dict[str, str]]:
    """Shared and customer directories, cgroups and limits (before any vassal (re)starts); then the runtime record.

    ``job.customers`` lists everyone served here: those without a new record in the job
    keep the one on disk (held-back customers, and on a deploy the unchanged ones). So does
    every customer whose files stay live after the job (its manifest), whatever the control
    side counted: a customer a deploy keeps on its old host while its new host fails still
    runs here, and must come back with its limits after a reboot (``runtime.restore``).
    Also returns the customers whose directories could not be made (a path that is not a
    directory any more), with why: they are held back, the others go ahead.
    """
    state = job.paths.state_dir
    named = job.customers if job.customers is not None else tuple(r.customer for r in job.runtime)
    everyone = tuple(sorted(set(named) | {e.customer for e in job.manifest.files.values() if e.customer}))
    given = {r.customer for r in job.runtime}
    known = runtime.read_all(state, [c for c in everyone if c not in given])
    records = {c: known[c] for c in everyone if c in known}
    records.update({r.customer: r for r in job.runtime})
    ordered = [records[c] for c in sorted(records)]
    host = job.host_runtime or runtime.read_host(state)  # a rollback: what the last apply recorded
    messages, broken = runtime.ensure_all(host, ordered)
    changes = runtime.cgroup_changes(ordered, host.cgroup_parents, keep=everyone)
    messages += cgroups.apply(changes)
    if job.vet and job.nginx.scaffold:  # how restore vets the server blocks before nginx starts at boot
        host = replace(host, nginx=runtime.NginxCheck(job.paths.nginx_dir, job.nginx.binary, job.nginx.scaffold))
    runtime.save(state, host if job.host_runtime is not None or host.nginx is not None else None, job.runtime, everyone)
    return messages, changes, broken


def _with_before(change: Change) -> Change:
    """A change planned from hashes alone (over SSH) gets the live content it replaces."""
    if change.action == "create" or change.before is not None:
        return change
    live = read_file(change.path)
    text = live.content.decode("utf-8", errors="replace") if live.content is not None else None
    return replace(change, before=text)


def intent(old: Manifest, plan: Plan) -> Manifest:
    """Old and new entries together, each changed file remembering the hash of its live content.

    The live content, not the old manifest's hash: after an apply killed half-way, a file
    may still hold an older version than the manifest names (found by the kill -9 test).
    """
    files = dict(old.files)
    live = {c.path: sha256(c.before) for c in plan.changes if c.before is not None}
    for path, entry in plan.manifest.files.items():
        previous = live.get(path)
        files[path] = Entry(entry.sha256, entry.kind, entry.customer, entry.app, None if previous == entry.sha256 else previous)
    return Manifest(files)


def _save_manifest(job: Job, manifest: Manifest) -> None:
    fsops.write_atomic(job.paths.manifest, manifest.to_json().encode(), 0o600)


def _save_quarantine(job: Job, rejections: list[Rejection]) -> None:
    """Replace the quarantine record (skipped when both old and new are empty)."""
    state = job.paths.state_dir
    if rejections or history.read_quarantine(state):
        history.save_quarantine(state, rejections, time.time())


def _group(job: Job, change: Change) -> int:
    """Vassals: root-owned, readable by the customer's group (its master re-reads the file on reload)."""
    name = job.vassal_groups.get(change.customer) if change.kind == "vassal" else None
    if name is None:
        return -1
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        raise EngineError(f"group {name!r} of customer {change.customer!r} does not exist{_on(job)}") from None


def _write(job: Job, change: Change) -> None:
    assert change.after is not None and change.mode is not None
    if change.mode_only:
        os.chmod(change.path, change.mode)
        return
    fsops.write_atomic(change.path, change.after.encode("utf-8"), change.mode, -1, _group(job, change))


def _restore(job: Job, changes: list[Change]) -> None:
    """Put each change's ``before`` back (or remove what it created)."""
    for change in changes:
        if change.before is None:
            fsops.remove(change.path)
        else:
            restored = Change(change.action, change.path, change.kind, change.customer, change.app,
                              None, change.before, change.mode or (0o644 if change.kind == "nginx" else 0o640))
            _write(job, restored)


def _poke(job: Job, result: Result) -> bool:
    if emperor.poke(job.paths.emperor_stats):
        return True
    note = (f"the Emperor did not answer on {job.paths.emperor_stats}; it picks the changes up within "
            f"{job.emperor_freq} s of starting or polling")
    if note not in result.notes:
        result.notes.append(note)
    return False


def _running_workers(stats: str, changes: list[Change]) -> dict[str, set[int]]:
    """The worker pids of the running vassals that ``changes`` rewrite (the Emperor reloads those gracefully).

    The master's pid comes from the Emperor, the workers from /proc (not from the customer's stats socket)."""
    if not changes:
        return {}
    found = emperor.read_stats(stats) or {}
    masters = {v.get("id"): v.get("pid") for v in found.get("vassals") or [] if isinstance(v, dict)}
    out: dict[str, set[int]] = {}
    for change in changes:
        name = os.path.basename(change.path)
        master = masters.get(name)
        if isinstance(master, int) and master > 0:
            out[name] = reload_wait.uwsgi_workers(master)
    return out


def _wait_new_vassals(job: Job, stats: str, created: list[Change], result: Result) -> None:
    """New vassals bind their sockets before nginx is reloaded to route to them (no 502 after apply returns)."""
    sockets = {job.sockets[c.path]: os.path.basename(c.path) for c in created if c.path in job.sockets}
    if not sockets:
        return

    def blacklisted() -> set[str]:
        found = emperor.read_stats(stats) or {}
        return {b.get("id") for b in found.get("blacklist") or [] if isinstance(b, dict)}

    late = reload_wait.wait_listening(sockets, blacklisted)
    if late:
        result.messages.append(f"not listening yet (see `hostctl status` and the app's log): {', '.join(late)}")


def toggled(plan: Plan) -> list[str]:
    """Vassals that exist and switch between on-demand and always-on in this plan, or whose on-demand
    socket moves (a companion's content changes): the Emperor reads a companion only when it first
    sees a vassal. The socket path is also named in the vassal's comments, so its vassal is rewritten
    in the same plan."""
    vassal_actions = {c.path: c.action for c in plan.changes if c.kind == "vassal"}
    out = []
    for change in plan.changes:
        if change.kind != "socket":
            continue
        vassal = change.path[: -len(COMPANION_EXT)]
        if vassal_actions.get(vassal) not in ("create", "delete"):
            out.append(vassal)
    return sorted(out)


def _probe(job: Job, plan: Plan, old: Manifest, result: Result) -> Plan:
    """Probe the changed customers that have probes; roll back the failures."""
    changed = {c.customer for c in plan.changes if c.action != "delete"}
    targets = [t for t in job.probes if t.customer in changed]
    if not targets:
        return plan
    if not nginx.running(job.nginx):
        result.messages.append(f"probes skipped for {len(targets)} app(s): nginx is not running (start it with `hostctl serve`)")
        return plan
    failed = [o for o in probe.run(job.listen, targets) if not o.ok]
    if not failed:
        return plan
    customers = {o.target.customer for o in failed}
    undo = [c for c in plan.changes if c.customer in customers and c.action != "delete"]
    _restore(job, undo)
    if any(c.kind != "nginx" for c in undo):
        _poke(job, result)
    if any(c.kind == "nginx" for c in undo):
        result.messages.append(nginx.reload(job.nginx))
    for o in failed:
        t = o.target
        result.rejections.append(Rejection(t.customer, f"http://{t.host}{t.path}",
                                           f"probe expected HTTP {t.status} within {t.timeout:g} s, got {o.got}; rolled back"))
    plan = restrict(plan, old, customers)
    _save_manifest(job, plan.manifest)
    return plan


def _record(job: Job, plan: Plan) -> history.Generation:
    """Record what is live now as a new generation (contents missing from the blobs are read from the live files)."""
    contents = {c.path: c.after for c in plan.changes if c.after is not None}
    modes = {c.path: c.mode for c in plan.changes if c.mode is not None}

    def live(path: str) -> str | None:
        found = read_file(path)
        if found.content is None:
            return None
        if path not in modes and found.mode is not None:
            modes[path] = found.mode
        return found.content.decode("utf-8", errors="replace")

    for path in plan.manifest.files:
        if path not in modes:
            try:
                modes[path] = os.lstat(path).st_mode & 0o7777
            except OSError:
                pass
    prov = job.provenance
    return history.record(job.paths.state_dir, plan.manifest, contents, modes, source=prov.source, note=prov.note,
                          inventory=prov.inventory, base=prov.base, origin=prov.origin, live=live)


def rollback(job: Job, customer: str | None, say: Say = lambda _: None, check: vetting.Check | None = None) -> tuple[Result, int]:
    """Put a kept generation back live (only ``customer``'s files, if given), under the lock; the target's number too.

    The engine plans this itself, from the generations and blobs on this server.
    ``job`` gives the paths and commands; its changes are ignored.
    """
    from hostctl.engine.core.plan import make_plan, read

    state = job.paths.state_dir
    with lock.exclusive(job.paths.lock, job.lock_timeout, say):
        generations = [history.load(state, n) for n in history.numbers(state)]
        target, origin, base, note = history.choose(generations, customer)
        desired = history.desired_files(state, generations[-1], target, customer)
        plan = make_plan(desired, read(job.paths.manifest, desired))
        if plan.conflicts:
            lines = "\n".join(f"  {c.path}: {c.reason}" for c in plan.conflicts)
            raise EngineError(f"files hostctl did not create are in the way; nothing was written:\n{lines}")
        snapshot = target.inventory if customer is None else generations[-1].inventory
        records = runtime.read_all(state)
        groups = dict(job.vassal_groups) or {c: r.user for c, r in records.items() if r.user}
        rolled = replace(job, basis=None, changes=plan.changes, manifest=plan.manifest, rejections=(), probes=(),
                         runtime=(), customers=tuple(records), vassal_groups=groups, users=(),
                         provenance=replace(job.provenance, source="rollback", note=note, base=base, origin=origin, inventory=snapshot))
        return execute_locked(rolled, check), target.number
