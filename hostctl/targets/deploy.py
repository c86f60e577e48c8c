"""`hostctl deploy`: bring every host of a multi-host inventory in line, in parallel.

Per host: render its customers locally, read its manifest and file hashes
(one SSH round trip), plan, and, when something changed, send one tar of the
changed files plus a script that applies them there (a second round trip; see
``remote.py``). Hosts run in parallel threads and fail independently.

When the inventory's bytes are those of an earlier deploy (``deploycache.py``)
and every host answers the digest recorded then, nothing is loaded or rendered.

A customer moving from host A to host B must be served by B before A stops
it: A's removal of a moved-out customer is held back in the first wave, and
applied in a second wave only on hosts whose customers' new hosts succeeded.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from fabric import Connection

from hostctl.errors import HostctlError, Problem
from hostctl.inventory import loader as inventory_mod, placement
from hostctl.inventory.spec import Inventory
from hostctl.plan import quarantine
from hostctl.plan.diff import Plan, make_plan, render_plan
from hostctl.plan.files import Actual, RenderedFile
from hostctl.plan.manifest import Manifest, sha256
from hostctl.render import templates
from hostctl.render.files import render
from hostctl.render.identity import host_identity
from hostctl.targets import deploycache, remote, ssh

Say = Callable[[str], None]


@dataclass
class HostOutcome:
    """What happened on one host."""

    host: str
    plans: list[Plan] = field(default_factory=list)  # one per wave that ran here
    error: str | None = None
    uploaded: list[str] = field(default_factory=list)  # live paths written (their content was sent)
    messages: list[str] = field(default_factory=list)
    held: dict[str, str] = field(default_factory=dict)  # customer -> host it moved to; still served here
    round_trips: int = 0  # SSH commands run there
    rendered: bool = True  # False: its inputs and its digest were those recorded, so it was not even rendered

    @property
    def ok(self) -> bool:
        return self.error is None

    def count(self, action: str) -> int:
        return sum(p.count(action) for p in self.plans)  # type: ignore[arg-type]

    @property
    def changed(self) -> bool:
        return any(not p.empty for p in self.plans)


@dataclass
class DeployReport:
    outcomes: dict[str, HostOutcome]
    moves: dict[str, tuple[str, str]]  # customer -> (from host, to host): planned, or done by this deploy
    dry_run: bool = False
    held: dict[str, tuple[Problem, ...]] = field(default_factory=dict)  # customers whose own file is broken

    @property
    def ok(self) -> bool:
        return all(o.ok for o in self.outcomes.values())


def moved_out(plan: Plan, host: str, placed: dict[str, str]) -> dict[str, str]:
    """Customers whose files ``plan`` removes from ``host`` because they now live on another host."""
    return {c.customer: placed[c.customer] for c in plan.changes
            if c.action == "delete" and placed.get(c.customer) not in (None, host)}


class HeadStart:
    """SSH begun before the inventory is loaded: a connection to each host and the digest of its state.

    Loading thousands of customer files and rendering them takes a while; meanwhile
    every host computes the digest of what it holds (``remote.digest_command``).
    A host whose digest matches the rendered files needs nothing more.
    """

    def __init__(self, root: str, wanted: list[str] | tuple[str, ...]):
        settings = placement.peek_settings(root)
        self.hosts = dict(settings.hosts) if settings else {}
        names = [n for n in (wanted or self.hosts) if n in self.hosts]
        self.connections = {n: ssh.connect(self.hosts[n], root) for n in names}
        self.pool = ThreadPoolExecutor(max_workers=max(1, len(names)), thread_name_prefix="hostctl-head")
        self.digests = {n: self.pool.submit(self._digest, n, settings) for n in names}

    def _digest(self, name: str, settings) -> str:
        command = remote.digest_command(placement.host_settings(settings, self.hosts[name]))
        done = ssh.execute(self.connections[name], command)
        if done.status != 0:
            raise HostctlError(f"reading the state failed (exit {done.status}): {(done.output + done.errors).strip()[:500]}")
        return done.output[:64]

    def all_in_sync(self, expected: dict[str, str], wanted: list[str] | tuple[str, ...]) -> list[str] | None:
        """The hosts, when every one of them answered exactly its ``expected`` digest; else None."""
        names = list(dict.fromkeys(wanted)) or sorted(self.hosts)
        if not expected or not names or any(n not in self.digests or n not in expected for n in names):
            return None
        for name in names:
            try:
                if self.digests[name].result() != expected[name]:
                    return None
            except Exception:  # noqa: BLE001 - the full deploy reports it
                return None
        return names

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        for conn in self.connections.values():
            conn.close()


class Deployment:
    """One deploy run: the loaded inventory, what each host should have, and the SSH connections."""

    def __init__(self, inv: Inventory, hosts: list[str], head: "HeadStart | None" = None,
                 inputs: deploycache.Inputs | None = None):
        if not inv.settings.hosts:
            raise HostctlError("hostctl.yaml has no 'hosts:'; this inventory is applied locally with `hostctl apply`.")
        self.inv = inv
        self.hosts = hosts
        self.placed = placement.placed(inv)
        self.connections: dict[str, Connection] = {}
        self.digests: dict[str, Future] = {}
        for name in hosts:
            host = inv.settings.hosts[name]
            if head is not None and head.hosts.get(name) == host and name in head.connections:
                self.connections[name] = head.connections[name]
                self.digests[name] = head.digests[name]
            else:
                self.connections[name] = ssh.connect(host, str(inv.root))
        env = templates.environment(inv.root)
        self.script_env = remote.script_environment(env)
        self.views = {name: placement.host_inventory(inv, name) for name in hosts}
        self.desired: dict[str, dict[str, RenderedFile]] = {}
        self.expected: dict[str, Actual] = {}  # each host's state right after this deploy
        self.listings: dict[str, str] = {}  # ... as remote.read_command prints it
        self.digests_expected: dict[str, str] = {}
        self.host_fps: dict[str, str] = {}
        self.basis: dict[str, str] = {}  # digest of the state each host's plan was made from
        self.in_sync: dict[str, str] = {}  # hosts not rendered: they answered the digest recorded for their inputs
        for name in hosts:
            if inputs is not None:
                self.host_fps[name] = inputs.for_host(c.file for c in self.views[name].customers)
                recorded = deploycache.host_digest(str(inv.root), name, self.host_fps[name])
                if recorded is not None and self._answered(name) == recorded:
                    self.in_sync[name] = recorded
                    continue
            identity = host_identity(inv.settings, inv.settings.hosts[name])
            self.desired[name] = render(self.views[name], identity, env)
            self.expected[name] = remote.expected(self.desired[name])
            self.listings[name] = remote.listing(self.expected[name])
            self.digests_expected[name] = sha256(self.listings[name])

    def _answered(self, name: str) -> str | None:
        """The digest host ``name`` answered to the head start (None: no answer)."""
        future = self.digests.get(name)
        try:
            return future.result() if future is not None else None
        except Exception:  # noqa: BLE001 - reported when the host is deployed
            return None

    def close(self) -> None:
        for conn in self.connections.values():
            conn.close()

    def where(self, name: str) -> str:
        host = self.inv.settings.hosts[name]
        return f"{host.user}@{host.address}:{host.port}"

    def read_plan(self, name: str, outcome: HostOutcome) -> tuple[Plan, Actual | None]:
        """The host's plan: from the head start's digest when the host is exactly as expected, else read in full.

        ``None`` for the state of a host that is in sync and was not rendered.
        """
        if name in self.in_sync:
            self.digests.pop(name, None)
            outcome.round_trips += 1
            return Plan((), (), Manifest()), None
        desired = self.desired[name]
        head = self.digests.pop(name, None)
        if head is not None:
            digest = head.result()
            outcome.round_trips += 1
            self.basis[name] = digest
            if digest == self.digests_expected[name]:
                actual = self.expected[name]
                return self._plan(desired, actual), actual
            known = deploycache.listing(str(self.inv.root), name, digest)
            if known is not None:  # the host is as the previous deploy left it: no need to read it in full
                actual = remote.parse_state(known, f"host {name!r}")
                return self._plan(desired, actual), actual
        settings = self.views[name].settings
        done = ssh.execute(self.connections[name], remote.read_command(settings))
        outcome.round_trips += 1
        if done.status != 0:
            raise HostctlError(f"reading the state failed (exit {done.status}): {(done.output + done.errors).strip()[:500]}")
        self.basis[name] = hashlib.sha256(done.output.encode("utf-8", "surrogateescape")).hexdigest()
        actual = remote.parse_state(done.output, f"host {name!r}")
        return self._plan(desired, actual), actual

    def _plan(self, desired, actual: Actual) -> Plan:
        """The plan for a host; customers whose own file is broken keep their files there as they are."""
        return quarantine.keep_live(make_plan(desired, actual), actual.manifest, self.inv.held)

    def push(self, name: str, hold: set[str], outcome: HostOutcome) -> HostOutcome:
        """Read, plan and apply on one host, keeping the files of the customers in ``hold``."""
        plan, actual = self.read_plan(name, outcome)
        if actual is None:  # in sync
            outcome.plans.append(plan)
            outcome.rendered = False
            return outcome
        outcome.held = {c: t for c, t in moved_out(plan, name, self.placed).items() if c in hold}
        plan = remote.hold_back(plan, actual.manifest, outcome.held)
        outcome.plans.append(plan)
        if plan.conflicts:
            lines = "; ".join(f"{c.path}: {c.reason}" for c in plan.conflicts)
            raise HostctlError(f"files hostctl did not create are in the way; nothing was written: {lines}")
        if plan.empty and plan.manifest == actual.manifest:
            return outcome
        view = self.views[name]
        host = self.inv.settings.hosts[name]
        users = {c.name: c.user for c in view.customers}
        users.update({c.customer: self._user(c.customer) for c in plan.changes if c.customer not in users})
        bundle = remote.bundle(name, view.settings, plan, actual.manifest,
                               host_identity(self.inv.settings, host), users, self.script_env,
                               self.basis[name])
        done = ssh.execute(self.connections[name], bundle.command, bundle.payload)
        outcome.round_trips += 1
        outcome.messages += [line.removeprefix("hostctl-deploy: ") for line in done.output.splitlines()
                             if line.startswith("hostctl-deploy: ") and not line.endswith(": done")]
        if done.status != 0:
            detail = (done.output + done.errors).strip()
            if done.status in (remote.EXIT_CHANGED, remote.EXIT_LOCKED):
                raise HostctlError(detail.removeprefix("hostctl-deploy: "))
            if done.status == remote.EXIT_NGINX_TEST:
                raise HostctlError(f"nginx -t failed there; its previous server blocks were put back:\n{detail}")
            raise HostctlError(f"the deploy script failed (exit {done.status}):\n{detail}")
        outcome.uploaded += bundle.uploaded
        return outcome

    def _user(self, customer: str) -> str:
        spec = self.inv.customer(customer)
        return spec.user if spec else self.inv.settings.isolation.user_prefix + customer


def _run(deployment: Deployment, names: list[str], work: Callable[[str], HostOutcome],
         outcomes: dict[str, HostOutcome]) -> None:
    results = ssh.each_host(names, work)
    for name, result in results.items():
        if isinstance(result, BaseException):
            outcome = outcomes.setdefault(name, HostOutcome(name))
            message = str(getattr(result, "message", "") or result) or type(result).__name__
            outcome.error = message
        else:
            outcomes[name] = result


def deploy(root: Path | str, hosts: list[str] | tuple[str, ...] = (), dry_run: bool = False) -> DeployReport:
    """Deploy the inventory at ``root`` to ``hosts`` (all when empty); never raises for one host's failure."""
    root = os.path.abspath(root)
    head = HeadStart(root, tuple(hosts))
    inputs = deploycache.inputs(root)
    in_sync = head.all_in_sync(deploycache.expected_digests(root, inputs.fingerprint), hosts)
    if in_sync is not None:
        head.close()
        return DeployReport({n: HostOutcome(n, round_trips=1) for n in in_sync}, {}, dry_run)
    try:
        inv = inventory_mod.load(root, partial=True)  # a broken customer file holds back that customer only
        names = placement.select_hosts(inv, hosts)
        deployment = Deployment(inv, names, head, inputs)
    except BaseException:
        head.close()
        raise
    outcomes: dict[str, HostOutcome] = {}
    before: dict[str, dict[str, str]] = {}
    try:
        if dry_run:
            def look(name: str) -> HostOutcome:
                outcome = HostOutcome(name)
                plan, _ = deployment.read_plan(name, outcome)
                outcome.plans.append(plan)
                outcome.held = moved_out(plan, name, deployment.placed)
                return outcome

            _run(deployment, names, look, outcomes)
        else:
            # Wave 1: everything except removing customers that moved to another host.
            _run(deployment, names, lambda n: deployment.push(n, set(deployment.placed), HostOutcome(n)), outcomes)
            # Wave 2: remove them where their new host now serves them.
            served = {n for n, o in outcomes.items() if o.ok}
            second = {}
            for name, outcome in outcomes.items():
                if outcome.ok and any(target in served for target in outcome.held.values()):
                    second[name] = {c for c, target in outcome.held.items() if target not in served}
            before = {n: dict(outcomes[n].held) for n in second}
            _run(deployment, sorted(second), lambda n: deployment.push(n, second[n], outcomes[n]), outcomes)
    finally:
        deployment.close()
        head.close()
    if not dry_run:  # a dry run changes nothing: what the hosts hold is still what the last deploy expected
        deploycache.remember(root, inputs.fingerprint, deployment.listings, deployment.in_sync)
        deploycache.remember_hosts(root, {n: (deployment.host_fps[n], deployment.digests_expected[n]) for n in deployment.listings})
    if dry_run:
        moves = {c: (source, target) for source, o in outcomes.items() for c, target in o.held.items()}
    else:
        moves = {c: (n, target) for n, held in before.items() if outcomes[n].ok
                 for c, target in held.items() if c not in outcomes[n].held}
        for o in outcomes.values():
            for customer, target in o.held.items():
                why = "it was not deployed" if target not in names else "its deploy failed"
                o.messages.append(f"kept {customer!r} here: it moved to {target!r}, but {why}")
    return DeployReport({n: outcomes[n] for n in names}, moves, dry_run, dict(inv.held))


def render_report(report: DeployReport, where: Callable[[str], str] | None = None, show_plan: bool = True) -> str:
    """The report as text: each host's plan (or error), moves, and a one-line verdict per host."""
    out: list[str] = []
    for name, outcome in report.outcomes.items():
        for plan in outcome.plans if show_plan else ():
            if not plan.empty:
                out.append(f"== {name} ==")
                out.append(render_plan(plan, show_diff=False).rstrip("\n"))
                out.append("")
    for customer, (source, target) in sorted(report.moves.items()):
        if report.dry_run:
            out.append(f"move: {customer!r} from {source!r} to {target!r}; {target!r} serves it before {source!r} removes it.")
        else:
            out.append(f"moved: {customer!r} from {source!r} to {target!r} ({target!r} was deployed first).")
    for name, outcome in report.outcomes.items():
        label = f"{name} ({where(name)})" if where else name
        if not outcome.ok:
            out.append(f"{label}: FAILED: {outcome.error}")
            continue
        o = outcome
        if not o.changed:
            verdict = "no changes"
        elif report.dry_run:
            verdict = f"{o.count('create')} to add, {o.count('update')} to change, {o.count('delete')} to remove"
        else:
            verdict = (f"{o.count('create')} added, {o.count('update')} changed, {o.count('delete')} removed; "
                       f"{len(o.uploaded)} file(s) uploaded")
        notes = "".join(f"; {m}" for m in outcome.messages)
        out.append(f"{label}: {verdict}{notes} ({outcome.round_trips} SSH round trip{'s' if outcome.round_trips != 1 else ''})")
    if report.held:
        out.append(f"{len(report.held)} customer(s) held back by their own inventory file; their files stay as they are on their host:")
        out += [f"  {r}" for r in sorted(quarantine.held_back(report.held))]
    failed = [n for n, o in report.outcomes.items() if not o.ok]
    if failed:
        out.append(f"{len(failed)} of {len(report.outcomes)} host(s) failed: {', '.join(failed)}.")
    elif not report.dry_run:
        out.append(f"Deploy complete on {len(report.outcomes)} host(s).")
    return "\n".join(out) + "\n"
