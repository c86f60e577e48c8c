"""Make the live directories match the plan: the effects, kept thin.

Order matters, and is chosen so that nothing half-done is ever live:

1. vet the candidates (``vetting.py``): a customer whose output fails is held
   back (quarantined) with its last-known-good files, the others go ahead;
2. record the intent in the manifest (a crash later still knows every file);
3. write server blocks, then run the production ``nginx -t`` if configured
   (a failure puts the old server blocks back, and nothing else is written);
4. write vassals and poke the Emperor, which spawns or gracefully reloads
   exactly the vassals whose files changed;
5. reload nginx, only if a server block changed;
6. remove vassals of apps that left (nginx no longer routes to them), poke;
7. write the final manifest; probe changed customers that ask for it, rolling
   back those that fail; record the generation and the quarantine
   (``safeapply.py``).
"""

from __future__ import annotations

import os
import pwd
from dataclasses import dataclass, field
from typing import Callable

from hostctl.engine import dirs, emperor, fsops, isolation, lock, nginx, pipeline, reload_wait, safeapply, state, stopping, users, vetting
from hostctl.engine.owners import Owners
from hostctl.engine.pipeline import Prepared
from hostctl.errors import HostctlError
from hostctl.inventory.schema import Settings
from hostctl.plan import quarantine
from hostctl.plan.diff import Change, Plan
from hostctl.plan.manifest import Entry, Manifest, sha256
from hostctl.plan.quarantine import Rejection
from hostctl.render import cgroups, layout, ondemand

Say = Callable[[str], None]


@dataclass
class ApplyResult:
    plan: Plan
    messages: list[str] = field(default_factory=list)
    owners: Owners | None = None
    isolation: "isolation.IsolationPlan | None" = None  # users created, cgroup changes made
    rejections: list[Rejection] = field(default_factory=list)  # quarantined customers (exit 1)


def _ensure_base_dirs(settings: Settings) -> None:
    for path in (settings.emperor_dir, settings.nginx_dir, settings.run_dir, settings.log_dir):
        os.makedirs(path, mode=0o755, exist_ok=True)
    os.makedirs(settings.state_dir, mode=0o700, exist_ok=True)
    for directory in (settings.emperor_dir, settings.nginx_dir):
        fsops.clean_temp_files(directory)


def _owner(change: Change, owners: Owners) -> tuple[int, int]:
    """Vassals: root-owned, readable by the customer's group (its master re-reads the file on reload)."""
    if change.kind == "vassal" and owners.identity.per_customer:
        return -1, owners.of(change.customer)[1]
    return -1, -1


def _write(change: Change, owners: Owners) -> None:
    assert change.after is not None and change.mode is not None
    if change.mode_only:
        os.chmod(change.path, change.mode)
        return
    uid, gid = _owner(change, owners)
    fsops.write_atomic(change.path, change.after.encode("utf-8"), change.mode, uid, gid)


def _intent(old: Manifest, plan: Plan) -> Manifest:
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


def _save_manifest(settings: Settings, manifest: Manifest) -> None:
    fsops.write_atomic(layout.manifest(settings), manifest.to_json().encode(), 0o600)


def execute(prepared: Prepared, say: Say = lambda _: None,
            provenance: safeapply.Provenance = safeapply.Provenance()) -> ApplyResult:
    """Apply ``prepared.plan``, then finish what ``remove-customer --purge`` asked for. The caller holds the apply lock."""
    result = _execute(prepared, say, provenance)
    result.messages += _purge(prepared, result)
    return result


def _execute(prepared: Prepared, say: Say, provenance: safeapply.Provenance) -> ApplyResult:
    plan, settings, owners = prepared.plan, prepared.inventory.settings, prepared.owners
    result = ApplyResult(plan, owners=owners, isolation=prepared.isolation)
    held = quarantine.held_back(prepared.inventory.held)  # broken inventory files: their live files stay
    result.rejections = list(held)
    if plan.conflicts:
        lines = "\n".join(f"  {c.path}: {c.reason}" for c in plan.conflicts)
        raise HostctlError(f"files hostctl did not create are in the way; nothing was written:\n{lines}")
    _ensure_base_dirs(settings)
    result.messages += dirs.ensure_customer_dirs(settings, owners, {c.name for c in prepared.inventory.customers})
    if prepared.isolation is not None:  # cgroups and their limits exist before any vassal (re)starts
        result.messages += isolation.execute(prepared.isolation)
    if plan.empty:
        if plan.manifest != state.read_manifest(layout.manifest(settings)):
            _save_manifest(settings, plan.manifest)  # e.g. files that vanished by hand drop out
        safeapply.save_quarantine(prepared, held)
        return result
    old_manifest = state.read_manifest(layout.manifest(settings))
    plan, vetted = vetting.vet(prepared, old_manifest, readback=provenance.readback)
    result.plan, result.rejections = plan, held + vetted
    if plan.empty:
        safeapply.save_quarantine(prepared, result.rejections)
        return result

    _save_manifest(settings, _intent(old_manifest, plan))

    server_changes = [c for c in plan.changes if c.kind == "nginx"]
    vassal_writes = [c for c in plan.changes if c.kind == "vassal" and c.action != "delete"]
    vassal_removals = [c for c in plan.changes if c.kind == "vassal" and c.action == "delete"]
    socket_changes = [c for c in plan.changes if c.kind == ondemand.KIND]

    for change in server_changes:
        _write(change, owners) if change.action != "delete" else fsops.remove(change.path)
    if server_changes:
        live = nginx.test_live(settings)
        if live is not None and not live.ok:
            _restore(server_changes, owners)
            _save_manifest(settings, old_manifest)
            raise HostctlError(f"`{settings.nginx.test_command}` failed; the previous server blocks were put back and nothing else was written:\n{live.output}")

    stats = layout.emperor_stats(settings)
    toggled = ondemand.toggled(plan)
    if toggled:  # the Emperor reads a companion only when it first sees a vassal
        for path in toggled:
            fsops.remove(path)
        if not ondemand.wait_released(emperor.read_stats, stats, toggled):
            raise HostctlError(f"the Emperor did not let go of {', '.join(toggled)} in time; run apply again")
        result.messages.append(f"restarted (on-demand mode changed): {', '.join(toggled)}")
    for change in socket_changes:  # before the vassals, so a new vassal is seen with its companion
        _write(change, owners) if change.action != "delete" else fsops.remove(change.path)
    reloaded = [c for c in vassal_writes if c.action == "update" and not c.mode_only and c.path not in toggled]
    old_workers = _running_workers(stats, reloaded)
    for change in vassal_writes:
        _write(change, owners)
    if vassal_writes and _poke(stats, settings, result):
        _wait_new_vassals(settings, stats, [c for c in vassal_writes if c.action == "create" or c.path in toggled], result)
        late = reload_wait.wait_exited(old_workers, nudge=lambda: emperor.poke(stats))
        if late:
            result.messages.append(f"still finishing requests on workers with the previous code or settings: {', '.join(late)}")

    if server_changes:
        result.messages.append(nginx.reload(settings))

    for change in vassal_removals:
        fsops.remove(change.path)
    if vassal_removals:
        _poke(stats, settings, result)
        _stop_departed(prepared, plan, vassal_removals, stats, result)

    for directory in (settings.emperor_dir, settings.nginx_dir):
        fsops.fsync_dir(directory)
    _save_manifest(settings, plan.manifest)

    effects = safeapply.Effects(lambda changes: _restore(changes, owners), lambda: _poke(stats, settings, result),
                                lambda: nginx.reload(settings))
    after = safeapply.probe_changed(prepared, plan, old_manifest, effects) if provenance.probe else safeapply.Aftercare(plan)
    if after.rejections:
        _save_manifest(settings, after.plan.manifest)
    result.plan, result.messages = after.plan, result.messages + after.messages
    result.rejections += after.rejections
    if not after.plan.empty:
        safeapply.record(prepared, after.plan, result.rejections, provenance)
    safeapply.save_quarantine(prepared, result.rejections)
    return result


def _account(prepared: Prepared, customer: str, user: str | None) -> tuple[int, int] | None:
    """(uid, gid) whose processes may all be killed for ``customer``: its own account, never root, nginx's,
    a system account or a current customer's (``accounts.py``'s range)."""
    owners, iso = prepared.owners, prepared.inventory.settings.isolation
    if customer in owners.customers:
        return owners.of(customer)
    if not user:
        return None
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        return None
    others = {uid for uid, _ in owners.customers.values()}
    if not iso.uid_min <= entry.pw_uid <= iso.uid_max or entry.pw_uid in others:
        return None
    return entry.pw_uid, entry.pw_gid


def _leaves(prepared: Prepared, customer: str) -> tuple[list[str], bool]:
    h = prepared.owners.identity.cgroup
    if h is None or h.version is None:
        return [], False
    names = cgroups.V1_CONTROLLERS if h.version == "v1" else ("memory",)
    leaves = [leaf for leaf in (h.leaf(customer, c) for c in names) if leaf and os.path.isdir(leaf)]
    return leaves, h.version == "v2"


def _kill_all(prepared: Prepared, customer: str, user: str | None, remove_cgroup: bool) -> list[str]:
    """Kill every process ``customer`` left (its cgroup, its uid); remove its cgroup when it left the inventory."""
    leaves, v2 = _leaves(prepared, customer)
    done = []
    before = set().union(*(stopping.cgroup_members(leaf) for leaf in leaves)) if leaves else set()
    account = _account(prepared, customer, user)
    if account is not None:
        before |= set(stopping.processes_of(account[0]))
    if leaves and not stopping.kill_cgroup(leaves, v2):
        done.append(f"{customer}: processes are left in {', '.join(leaves)} after {stopping.KILL_TIMEOUT:.0f} s of SIGKILL")
    if account is not None and not stopping.kill_user(*account):
        done.append(f"{customer}: processes of uid {account[0]} are left after {stopping.KILL_TIMEOUT:.0f} s of SIGKILL")
    if before:
        done.append(f"{customer}: killed {len(before)} process(es) it left running")
    if remove_cgroup:
        for leaf in leaves:
            try:
                os.rmdir(leaf)
            except OSError as exc:
                done.append(f"cgroup {leaf} was not removed ({exc.strerror}); a later apply retries")
    return done


def _stop_departed(prepared: Prepared, plan: Plan, removals: list[Change], stats: str, result: ApplyResult) -> None:
    """Customers that no longer run any app: wait until the Emperor let their vassals go, then kill what is left."""
    still = {e.customer for e in plan.manifest.files.values() if e.kind == "vassal"}
    gone = sorted({c.customer for c in removals} - still - set(prepared.inventory.held))
    if not gone:
        return
    ondemand.wait_released(emperor.read_stats, stats, [c.path for c in removals if c.customer in gone], timeout=20.0)
    present = {c.name for c in prepared.inventory.customers}
    for customer in gone:
        user = next((stopping.user_of_vassal(c.before) for c in removals if c.customer == customer and c.before), None)
        notes = _kill_all(prepared, customer, user, remove_cgroup=customer not in present)
        if customer not in present:  # its cgroup went now: drop isolation's "not removed yet" notes about it
            result.messages = [m for m in result.messages if not (f"/{customer} was not removed" in m and "later apply" in m)]
        result.messages += notes


def _purge(prepared: Prepared, result: ApplyResult) -> list[str]:
    """Customers removed with ``--purge`` whose apps are gone: their processes, cgroups, directories and user."""
    settings = prepared.inventory.settings
    purges = stopping.read_purges(settings.state_dir)
    if not purges:
        return []
    present = {c.name for c in prepared.inventory.customers} | set(prepared.inventory.held)
    running = {e.customer for e in result.plan.manifest.files.values() if e.kind == "vassal"}
    messages, left = [], dict(purges)
    for customer, user in sorted(purges.items()):
        if customer in present:  # it came back: nothing to purge
            del left[customer]
            continue
        if customer in running or "/" in customer or customer in ("", ".", ".."):
            continue
        notes = _kill_all(prepared, customer, user, remove_cgroup=True)
        messages += notes
        if any("are left" in n or "not removed" in n for n in notes):
            continue  # retried by the next apply
        removed = [d for d in (settings.run_dir, settings.log_dir) if stopping.remove_tree(d, customer)]
        home = settings.isolation.home_dir
        account = _account(prepared, customer, user)
        if home and user and account is not None and stopping.remove_tree(home, user):
            removed.append(home)
        problem = stopping.delete_user(user) if user and account is not None else None
        if problem:
            messages.append(f"{customer}: {problem}")
            continue
        gone_user = f", Unix user {user}" if user and account is not None else ""
        messages.append(f"purged customer {customer}: {', '.join(os.path.join(d, customer if d != home else user) for d in removed) or 'no directories'}{gone_user}")
        del left[customer]
    if left != purges:
        stopping.save_purges(settings.state_dir, left)
    return messages


def _poke(stats: str, settings: Settings, result: ApplyResult) -> bool:
    if emperor.poke(stats):
        return True
    note = f"the Emperor did not answer on {stats}; it picks the changes up within {settings.emperor.freq} s of starting or polling"
    if note not in result.messages:
        result.messages.append(note)
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


def _wait_new_vassals(settings: Settings, stats: str, created: list[Change], result: ApplyResult) -> None:
    """New vassals bind their sockets before nginx is reloaded to route to them (no 502 after apply returns)."""
    if not created:
        return
    sockets = {layout.app_paths(settings, c.customer, c.app).socket: os.path.basename(c.path) for c in created}

    def blacklisted() -> set[str]:
        found = emperor.read_stats(stats) or {}
        return {b.get("id") for b in found.get("blacklist") or [] if isinstance(b, dict)}

    late = reload_wait.wait_listening(sockets, blacklisted)
    if late:
        result.messages.append(f"not listening yet (see `hostctl status` and the app's log): {', '.join(late)}")


def _restore(changes: list[Change], owners: Owners) -> None:
    for change in changes:
        if change.before is None:
            fsops.remove(change.path)
        else:
            restored = Change(change.action, change.path, change.kind, change.customer, change.app,
                              None, change.before, change.mode or (0o644 if change.kind == "nginx" else 0o640))
            _write(restored, owners)


def apply(root: str, lock_timeout: float, say: Say = lambda _: None, create_users: bool = False) -> ApplyResult:
    """Load, plan and apply under the apply lock (so the plan reflects the state it changes).

    ``create_users``: create missing customer users first (root, per-customer mode).
    """
    with pipeline.gc_paused():
        return _apply(root, lock_timeout, say, create_users)


def _apply(root: str, lock_timeout: float, say: Say, create_users: bool) -> ApplyResult:
    inv, owners = pipeline.load_checked(root, missing_users_ok=create_users)
    with lock.exclusive(layout.lock(inv.settings), lock_timeout, say):
        created = users.create(owners.missing_users, inv.settings.isolation.home_dir,
                               inv.settings.isolation.uid_min, inv.settings.isolation.uid_max) if owners.missing_users else []
        if created:
            inv, owners = pipeline.load_checked(root)
        prepared = pipeline.prepare_loaded(inv, owners)
        result = execute(prepared, say)
        result.messages[:0] = created
        return result
