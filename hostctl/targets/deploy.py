"""`hostctl deploy`: bring every host of a multi-host inventory in line, in parallel.

Per host: read its state digest and facts (one SSH round trip), render its
customers for it, plan, and, when something changed, run the engine there (a
second round trip): the engine, shipped as a zip (``shipping.py``), gets a job
with the changed files and does exactly what ``apply`` does locally (lock,
compare-and-swap on the state, users, cgroups and limits, quarantine with
``nginx -t``, probes and rollback, generations). Hosts run in parallel threads
and fail independently.

When the inventory's bytes are those of an earlier deploy (``deploycache.py``)
and every host answers the digest recorded then, nothing is loaded or rendered.

A customer moving from host A to host B must be served by B before A stops
it: A's removal of a moved-out customer is held back in the first wave, and
applied in a second wave only on hosts whose customers' new hosts succeeded.
"""

from __future__ import annotations

import hashlib
import os
from datetime import datetime, timezone
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from fabric import Connection

from hostctl.engine import apply as apply_mod, nginx
from hostctl.render import cgroups
from hostctl.targets import customers, deploycache, remote
from hostctl.inventory import loader as inventory_mod, placement
from hostctl.plan import quarantine
from hostctl.targets import shipping, tlsship
from hostctl.targets import ssh
from hostctl.errors import Problem
from hostctl.render import templates
from hostctl.engine import vetting
from hostctl.engine.core import runtime
from hostctl.engine.core.accounts import DEFAULT_NGINX_USER
from hostctl.engine.core.job import Job, Provenance
from hostctl.engine.core.manifest import Manifest, sha256
from hostctl.engine.core.plan import Actual, Plan, changed_customers, make_plan
from hostctl.engine.core.quarantine import Rejection
from hostctl.engine.core.runtime import CustomerRuntime, HostRuntime
from hostctl.errors import HostctlError
from hostctl.inventory.spec import Inventory
from hostctl.plan.diff import render_plan
from hostctl.render import identity as identity_mod
from hostctl.render.identity import Identity
from hostctl.render.files import render
from hostctl.engine.certs import now_utc

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
    rejections: list[Rejection] = field(default_factory=list)  # customers quarantined or rolled back there
    runtime: list[str] = field(default_factory=list)  # customers whose runtime record (directories, limits) changes
    cgroup_changes: list[str] = field(default_factory=list)  # what the engine changed in the host's cgroups
    generation: int | None = None  # recorded there by this deploy
    purges: list[str] = field(default_factory=list)  # customers whose purge the engine there now holds
    no_certificate: list[Rejection] = field(default_factory=list)  # ACME: served on plain HTTP, and why
    tls: list[str] = field(default_factory=list)  # dry run: how its TLS apps would be served (`plan --host`)

    @property
    def ok(self) -> bool:
        return self.error is None and not self.rejections and not self.no_certificate

    def count(self, action: str) -> int:
        return sum(p.count(action) for p in self.plans)  # type: ignore[arg-type]

    @property
    def changed(self) -> bool:
        return any(not p.empty for p in self.plans) or bool(self.runtime)


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
    """SSH begun before the inventory is loaded: a connection to each host, the digest of its state and its facts.

    Loading thousands of customer files and rendering them takes a while; meanwhile
    every host computes the digest of what it holds (``remote.digest_command``) and
    prints its facts (uid, cgroup mounts). A host whose digest matches the rendered
    files needs nothing more.
    """

    def __init__(self, root: str, wanted: list[str] | tuple[str, ...]):
        settings = placement.peek_settings(root)
        self.hosts = dict(settings.hosts) if settings else {}
        # a host the inventory refuses (a non-root login without become) is not even read: load reports it
        names = [n for n in (wanted or self.hosts) if n in self.hosts and placement.isolation_problem(settings, n) is None]
        self.connections = {n: ssh.connect(self.hosts[n], root, n) for n in names}
        self.pool = ThreadPoolExecutor(max_workers=max(1, len(names)), thread_name_prefix="hostctl-head")
        self.digests = {n: self.pool.submit(self._digest, n, settings) for n in names}

    def _digest(self, name: str, settings) -> tuple[str, str]:
        command = remote.digest_command(placement.host_settings(settings, self.hosts[name]))
        done = ssh.execute(self.connections[name], command)
        if done.status != 0:
            raise HostctlError(f"reading the state failed (exit {done.status}): {(done.output + done.errors).strip()[:500]}")
        return remote.parse_head(done.output)

    def all_in_sync(self, expected: dict[str, str], wanted: list[str] | tuple[str, ...]) -> list[str] | None:
        """The hosts, when every one of them answered exactly its ``expected`` digest (and facts); else None."""
        names = list(dict.fromkeys(wanted)) or sorted(self.hosts)
        if not expected or not names or any(n not in self.digests or n not in expected for n in names):
            return None
        for name in names:
            try:
                if remote.answered(*self.digests[name].result()) != expected[name]:
                    return None
            except Exception:  # noqa: BLE001 - the full deploy reports it
                return None
        return names

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        for conn in self.connections.values():
            conn.close()


@dataclass
class HostPlan:
    """One host's plan: its files, and the runtime records (directories, cgroup limits) that change."""

    plan: Plan
    actual: Actual | None  # None: the host is in sync and was not rendered
    identity: "Identity | None" = None
    records: tuple[CustomerRuntime, ...] = ()  # new or changed runtime records
    host_record: HostRuntime | None = None
    runtime_changed: bool = False  # a record changes or goes
    desired: dict = field(default_factory=dict)  # the rendered files (path -> RenderedFile)
    certs: tlsship.HostCerts = field(default_factory=tlsship.HostCerts)

    @property
    def empty(self) -> bool:
        return self.plan.empty and not self.runtime_changed


def _snapshot(root: Path, files: list[str]) -> dict[str, str]:
    """The inventory files a host's generation records: hostctl.yaml and its own customers' files."""
    out = {}
    for rel in files:
        try:
            out[rel] = (Path(root) / rel).read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
    return out


def limits_only(hp: HostPlan, plan: Plan) -> list[str]:
    """Customers whose runtime record (directories, cgroup limits) changes while none of their files do."""
    with_files = {c.customer for c in plan.changes}
    return [r.customer for r in hp.records if r.customer not in with_files]


def host_identity(inv: Inventory, name: str, facts: str) -> "Identity":
    """Who vassals run as on host ``name`` and where their cgroups are, from its settings and facts."""
    settings = inv.settings
    ident = identity_mod.host_identity(settings, name)
    h, errors = cgroups.decide(settings.cgroup, remote.parse_facts(facts, settings.cgroup), ident.per_customer)
    if errors:
        raise HostctlError(f"hostctl.yaml: cgroup: {'; '.join(errors)} (on host {name!r})")
    return replace(ident, cgroup=h)


@dataclass(frozen=True)
class RenderedHost:
    """A host's files and runtime records, rendered for its facts, and the state listing they make there."""

    identity: "Identity"
    desired: dict
    records: tuple[CustomerRuntime, ...]
    host_record: HostRuntime | None
    record_sums: dict[str, str]  # runtime record path -> sha256
    expected_text: str  # what ``remote.read_command`` prints on the host right after a deploy of these
    certs: tlsship.HostCerts = field(default_factory=tlsship.HostCerts)  # the certificates rendered in


def render_host(inv: Inventory, view: Inventory, name: str, env, facts: str, ident: "Identity | None" = None) -> RenderedHost:
    """Render host ``name``'s view for the facts it answered (``ident``: decided already), with the certificates
    this machine ships to it (``tlsship``: read here, never on the host)."""
    ident = ident or host_identity(inv, name, facts)
    host_certs = tlsship.for_host(inv, view, now_utc())
    desired = render(view, ident, env, host_certs.ready, host_certs.shipped)
    root = remote.parse_facts(facts, inv.settings.cgroup).root
    records, host_record = apply_mod.runtime_records(view, ident.per_customer, root, ident.nginx_group, ident.cgroup)
    record_sums = {runtime.record_path(view.settings.state_dir, r.customer): sha256(r.to_json()) for r in records}
    return RenderedHost(ident, desired, tuple(records), host_record, record_sums,
                        remote.listing(remote.expected(desired), record_sums), host_certs)


def compare(inv: Inventory, view: Inventory, rendered: RenderedHost, text: str, where: str) -> HostPlan:
    """The plan of a host whose state listing is ``text`` (read from it, or recorded at its last deploy)."""
    actual = remote.parse_state(text, where)
    live_records = remote.parse_runtime(text)
    state_dir = view.settings.state_dir
    changed = tuple(r for r in rendered.records if live_records.get(runtime.record_path(state_dir, r.customer)) != sha256(r.to_json()))
    held = {runtime.record_path(state_dir, c) for c in inv.held}
    gone = set(live_records) - set(rendered.record_sums) - held
    plan = quarantine.keep_live(make_plan(rendered.desired, actual), actual.manifest, inv.held)  # a broken file: kept as it is
    return HostPlan(plan, actual, rendered.identity, changed, rendered.host_record, bool(changed or gone), rendered.desired,
                    rendered.certs)


class Deployment:
    """One deploy run: the loaded inventory, what each host should have, and the SSH connections."""

    def __init__(self, inv: Inventory, hosts: list[str], head: "HeadStart | None" = None,
                 inputs: deploycache.Inputs | None = None, create_users: bool = False):
        if not inv.settings.hosts:
            raise HostctlError("hostctl.yaml has no 'hosts:'; this inventory is applied locally with `hostctl apply`.")
        self.inv = inv
        self.hosts = hosts
        self.create_users = create_users
        self.placed = placement.placed(inv)
        self.purges = customers.host_purges(inv.settings.state_dir)  # remove-customer --purge, for their hosts
        self.connections: dict[str, Connection] = {}
        self.digests: dict[str, Future] = {}
        for name in hosts:
            host = inv.settings.hosts[name]
            if head is not None and head.hosts.get(name) == host and name in head.connections:
                self.connections[name] = head.connections[name]
                self.digests[name] = head.digests[name]
            else:
                self.connections[name] = ssh.connect(host, str(inv.root), name)
        self.env = templates.environment(inv.root)
        self.views = {name: placement.host_inventory(inv, name) for name in hosts}
        self.host_certs: dict[str, tlsship.HostCerts] = {}  # each host's certificates, as read_plan found them
        self.listings: dict[str, str] = {}  # each host's expected state right after this deploy, as read_command prints it
        self.facts: dict[str, str] = {}  # ... and the facts it answered (for `plan --host --offline`)
        self.digests_expected: dict[str, str] = {}  # ... its digest and facts (remote.answered)
        self.host_fps: dict[str, str] = {}
        self.basis: dict[str, str] = {}  # digest of the state each host's plan was made from
        self.in_sync: dict[str, str] = {}  # hosts not rendered: they answered the digest recorded for their inputs
        for name in hosts:
            if inputs is not None:
                self.host_fps[name] = inputs.for_host(c.file for c in self.views[name].customers)
                recorded = deploycache.host_digest(str(inv.root), name, self.host_fps[name])
                if recorded is not None and self._answered(name) == recorded and not self.purges_for(name):
                    self.in_sync[name] = recorded

    def purges_for(self, name: str) -> dict[str, str]:
        """customer -> Unix user: purges for host ``name`` of customers it no longer serves."""
        here = {c.name for c in self.views[name].customers}
        return {c: user for c, (host, user) in self.purges.items() if host == name and c not in here}

    def _answered(self, name: str) -> str | None:
        """What host ``name`` answered to the head start (None: no answer)."""
        future = self.digests.get(name)
        try:
            return remote.answered(*future.result()) if future is not None else None
        except Exception:  # noqa: BLE001 - reported when the host is deployed
            return None

    def close(self) -> None:
        for conn in self.connections.values():
            conn.close()

    def where(self, name: str) -> str:
        host = self.inv.settings.hosts[name]
        return f"{host.user}@{host.address}:{host.port}"

    def _read(self, name: str, outcome: HostOutcome) -> tuple[str, str]:
        """The host's state text and facts, read in full (one SSH command)."""
        done = ssh.execute(self.connections[name], remote.state_command(self.views[name].settings))
        outcome.round_trips += 1
        if done.status != 0:
            raise HostctlError(f"reading the state failed (exit {done.status}): {(done.output + done.errors).strip()[:500]}")
        text, _, facts = done.output.partition(f"{remote.FACTS_MARK}\n")
        return text, facts

    def identity(self, name: str, facts: str) -> "Identity":
        """Who vassals run as on host ``name`` and where their cgroups are, from its settings and facts."""
        return host_identity(self.inv, name, facts)

    def read_plan(self, name: str, outcome: HostOutcome) -> HostPlan:
        """The host's plan: rendered with its facts, against its state (from the digest when it is as expected)."""
        if name in self.in_sync:
            self.digests.pop(name, None)
            outcome.round_trips += 1
            return HostPlan(Plan((), (), Manifest()), None)
        view = self.views[name]
        head = self.digests.pop(name, None)
        text = None
        if head is not None:
            digest, facts = head.result()
            outcome.round_trips += 1
        else:
            text, facts = self._read(name, outcome)
            digest = sha256(text.encode("utf-8", "surrogateescape"))
        rendered = render_host(self.inv, view, name, self.env, facts)
        self.host_certs[name] = rendered.certs
        self.listings[name] = rendered.expected_text
        self.facts[name] = facts
        self.digests_expected[name] = remote.answered(sha256(rendered.expected_text), facts)
        if text is None:
            if digest == sha256(rendered.expected_text):
                text = rendered.expected_text
            else:
                text = deploycache.listing(str(self.inv.root), name, digest)
                if text is None:  # the host is not as the last deploy left it: read it in full
                    text, facts = self._read(name, outcome)
                    digest = sha256(text.encode("utf-8", "surrogateescape"))
        self.basis[name] = digest
        return compare(self.inv, view, rendered, text, f"host {name!r}")

    def push(self, name: str, hold: set[str], outcome: HostOutcome) -> HostOutcome:
        """Read, plan and apply on one host, keeping the files of the customers in ``hold``."""
        hp = self.read_plan(name, outcome)
        if hp.actual is None:  # in sync
            outcome.plans.append(hp.plan)
            outcome.rendered = False
            return outcome
        actual = hp.actual
        outcome.held = {c: t for c, t in moved_out(hp.plan, name, self.placed).items() if c in hold}
        plan = remote.hold_back(hp.plan, actual.manifest, outcome.held)
        outcome.plans.append(plan)
        outcome.runtime = limits_only(hp, plan)
        if plan.conflicts:
            lines = "; ".join(f"{c.path}: {c.reason}" for c in plan.conflicts)
            raise HostctlError(f"files hostctl did not create are in the way; nothing was written: {lines}")
        purges = self.purges_for(name)
        if plan.empty and plan.manifest == actual.manifest and not hp.runtime_changed and not purges:
            outcome.rejections += hp.certs.held  # still held: say so on every deploy
            return outcome
        job = replace(self.job(name, plan, hp), purges=purges)
        settings = self.views[name].settings
        done = ssh.execute(self.connections[name], shipping.command(settings.state_dir, ["apply"]), shipping.payload(job.to_dict()))
        outcome.round_trips += 1
        answer = shipping.answer(done.output)
        if not answer:
            raise HostctlError(f"the engine failed there (exit {done.status}):\n{(done.output + done.errors).strip()[-2000:]}")
        if answer.get("error"):
            raise HostctlError(answer["error"])
        applied = {(a, p) for a, p, *_ in answer["changes"]}
        final = Plan(tuple(c for c in plan.changes if (c.action, c.path) in applied), plan.conflicts, plan.manifest, plan.unchanged)
        outcome.plans[-1] = final
        outcome.messages += answer["messages"]
        outcome.rejections += [Rejection(*r) for r in answer["rejections"]]
        outcome.cgroup_changes += [f"{a} {p}" + (f" -> {after}" if after is not None else "") for a, p, _, after in answer["cgroup_changes"]]
        outcome.uploaded += [c.path for c in final.changes if c.action != "delete" and not c.mode_only]
        outcome.generation = answer.get("generation")
        outcome.purges = sorted(purges)  # recorded by the engine there: it finishes them on its own
        return outcome

    def job(self, name: str, plan: Plan, hp: HostPlan) -> Job:
        """What the engine does on host ``name``."""
        view = self.views[name]
        s = view.settings
        ident = hp.identity
        assert ident is not None
        changed = changed_customers(plan)
        rejections = tuple(vetting.readback_problems(view, hp.desired, ident.per_customer, changed)) + tuple(hp.certs.held)
        serving = {c.customer for c in plan.changes if c.kind == "nginx" and c.action != "delete"}
        snapshot = _snapshot(self.inv.root, ["hostctl.yaml", *sorted(c.file for c in view.customers)])
        return Job(
            paths=apply_mod.paths(s), nginx=nginx.engine_nginx(s, self.env), listen=s.nginx.listen, host=name,
            emperor_freq=s.emperor.freq, lock_timeout=remote.LOCK_WAIT, basis=self.basis[name],
            changes=tuple(replace(c, before=None) if c.action != "create" and not c.mode_only else c for c in plan.changes),
            manifest=plan.manifest, rejections=rejections, sockets=apply_mod.vassal_sockets(s, plan.changes),
            probes=apply_mod.probe_targets(view, changed),
            users=tuple(sorted({c.user for c in view.customers})) if ident.per_customer else (),
            create_users=self.create_users, home_dir=s.isolation.home_dir,
            uid_range=(s.isolation.uid_min, s.isolation.uid_max),
            vassal_groups={c.name: c.user for c in view.customers} if ident.per_customer else {},
            nginx_user=DEFAULT_NGINX_USER, nginx_group=s.nginx.group,  # the account rule, against the host's users
            runtime=hp.records, host_runtime=hp.host_record,
            customers=tuple(sorted({c.name for c in view.customers} | set(self.inv.held))),  # held: their records stay
            provenance=Provenance("apply", inventory=snapshot),
            cert_dir=s.tls.cert_dir, certs=tuple(c for c in hp.certs.certs if c.customer in serving),
        )


ON_HTTP = "served on plain HTTP until a certificate is issued"


def order_certificates(deployment: Deployment, outcomes: dict[str, HostOutcome]) -> list[str]:
    """Order the ACME certificates the deployed hosts need; the hosts that got one (deploy them again to ship it).

    The control machine is the ACME client (account key, pacing and history stay here, as for
    `hostctl certs issue`); each HTTP-01 token is written on the host that serves the domain and
    checked through its nginx before the challenge is answered. A customer whose certificate
    cannot be had is reported for its host; it stays on plain HTTP, the others go on."""
    from hostctl.acme import issuance

    host_of = {spec.name: name for name, certs in sorted(deployment.host_certs.items())
               if outcomes.get(name) is not None and outcomes[name].error is None for spec in certs.acme}
    specs = [s for name in sorted(set(host_of.values())) for s in deployment.host_certs[name].acme
             if s.customer not in deployment.inv.held]
    if not specs:
        return []

    def challenges(spec) -> tlsship.HostChallenges:
        name = host_of[spec.name]
        s = deployment.views[name].settings

        def run(request: dict) -> dict:
            done = ssh.execute(deployment.connections[name], shipping.command(s.state_dir, ["challenge"]), shipping.payload(request))
            outcomes[name].round_trips += 1
            return shipping.answer(done.output) or {"problem": f"the engine failed there (exit {done.status}): {(done.output + done.errors).strip()[-500:]}"}

        return tlsship.HostChallenges(run, s.tls.webroot, s.nginx.listen)

    plan, results = issuance.order_due(deployment.inv.settings, specs, frozenset({"issue", "renew"}), lambda _: None,
                                       frozenset(), lambda spec: None, challenges)
    got = []
    for held in plan.held:
        outcomes[host_of[held.spec.name]].no_certificate.append(Rejection(held.spec.customer, held.spec.name, f"{held.reason}; {ON_HTTP}"))
    for result in results:
        name = host_of[result.spec.name]
        if result.ok:
            outcomes[name].messages.append(result.line())
            got.append(name)
        else:
            outcomes[name].no_certificate.append(Rejection(result.spec.customer, result.spec.name, f"no certificate ({result.message}); {ON_HTTP}"))
    return sorted(set(got))


def settled_until(deployment: Deployment, outcomes: dict[str, HostOutcome]) -> dict[str, float | None]:
    """How long each host's TLS stays as deployed (epoch seconds; 0: a customer is held for its certificate)."""
    out: dict[str, float | None] = {}
    for name, found in deployment.host_certs.items():
        outcome = outcomes.get(name)
        if found.held or (outcome is not None and outcome.no_certificate):
            out[name] = 0.0
        elif found.settle_by is not None:
            out[name] = found.settle_by.timestamp()
    return out


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


def deploy(root: Path | str, hosts: list[str] | tuple[str, ...] = (), dry_run: bool = False,
           create_users: bool = False) -> DeployReport:
    """Deploy the inventory at ``root`` to ``hosts`` (all when empty); never raises for one host's failure."""
    root = os.path.abspath(root)
    head = HeadStart(root, tuple(hosts))
    inputs = deploycache.inputs(root)
    in_sync = head.all_in_sync(deploycache.expected_digests(root, inputs.fingerprint), hosts)
    settings = placement.peek_settings(root)
    if in_sync is not None and not (settings and customers.host_purges(os.path.join(root, settings.state_dir))):  # a purge to hand over
        head.close()
        return DeployReport({n: HostOutcome(n, round_trips=1) for n in in_sync}, {}, dry_run)
    try:
        inv = inventory_mod.load(root, partial=True)  # a broken customer file holds back that customer only
        names = placement.select_hosts(inv, hosts)
        deployment = Deployment(inv, names, head, inputs, create_users)
    except BaseException:
        head.close()
        raise
    outcomes: dict[str, HostOutcome] = {}
    before: dict[str, dict[str, str]] = {}
    try:
        if dry_run:
            def look(name: str) -> HostOutcome:
                outcome = HostOutcome(name)
                hp = deployment.read_plan(name, outcome)
                outcome.plans.append(hp.plan)
                outcome.runtime = limits_only(hp, hp.plan)
                outcome.held = moved_out(hp.plan, name, deployment.placed)
                outcome.tls = tlsship.plan_lines(deployment.views[name], hp.certs)
                return outcome

            _run(deployment, names, look, outcomes)
        else:
            # Wave 1: everything except removing customers that moved to another host.
            _run(deployment, names, lambda n: deployment.push(n, set(deployment.placed), HostOutcome(n)), outcomes)
            # Wave 2: remove them where their new host now serves them.
            def serves(target: str, customer: str) -> bool:
                o = outcomes.get(target)
                return o is not None and o.error is None and customer not in {r.customer for r in o.rejections}

            second = {}
            for name, outcome in outcomes.items():
                if outcome.error is None and any(serves(t, c) for c, t in outcome.held.items()):
                    second[name] = {c for c, t in outcome.held.items() if not serves(t, c)}
            before = {n: dict(outcomes[n].held) for n in second}
            _run(deployment, sorted(second), lambda n: deployment.push(n, second[n], outcomes[n]), outcomes)
            # ACME: certificates ordered now (their apps are live on HTTP), then shipped and served over HTTPS
            got = order_certificates(deployment, outcomes)
            _run(deployment, got, lambda n: deployment.push(n, set(outcomes[n].held), outcomes[n]), outcomes)
            for outcome in outcomes.values():
                outcome.rejections = list(dict.fromkeys(outcome.rejections))
    finally:
        deployment.close()
        head.close()
    handed = {c for o in outcomes.values() for c in o.purges}
    if handed and not dry_run:
        customers.save_host_purges(inv.settings.state_dir, {c: v for c, v in deployment.purges.items() if c not in handed})
    if not dry_run:  # a dry run changes nothing: what the hosts hold is still what the last deploy expected
        until = settled_until(deployment, outcomes)
        deploycache.remember(root, inputs.fingerprint, deployment.listings, deployment.in_sync, deployment.digests_expected, until)
        deploycache.remember_hosts(root, {n: (deployment.host_fps[n], deployment.digests_expected[n]) for n in deployment.listings}, until)
        _remember_states(root, deployment, outcomes)
    if dry_run:
        moves = {c: (source, target) for source, o in outcomes.items() for c, target in o.held.items()}
    else:
        moves = {c: (n, target) for n, held in before.items() if outcomes[n].error is None
                 for c, target in held.items() if c not in outcomes[n].held}
        for o in outcomes.values():
            for customer, target in o.held.items():
                why = "it was not deployed" if target not in names else "its deploy failed"
                o.messages.append(f"kept {customer!r} here: it moved to {target!r}, but {why}")
    return DeployReport({n: outcomes[n] for n in names}, moves, dry_run, dict(inv.held))


def _remember_states(root: str, deployment: Deployment, outcomes: dict[str, HostOutcome]) -> None:
    """Each rendered host's state after this deploy, for `plan --host --offline` (unknown where it did not go as planned)."""
    at = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    for name, text in deployment.listings.items():
        o = outcomes.get(name)
        if o is not None and o.ok and not o.held:
            deploycache.remember_state(root, name, text, deployment.facts[name], at)
        else:
            why = (o.error if o is not None and o.error else
                   "customers were quarantined or rolled back there" if o is not None and o.rejections else
                   "a customer that moved away was kept there" if o is not None and o.held else "it did not finish")
            deploycache.remember_state(root, name, None, None, at, why)


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
        if outcome.error is not None:
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
        if o.runtime:
            verb = "change" if report.dry_run else "changed"
            verdict += f"; directories or limits of {len(o.runtime)} customer(s) {verb} ({', '.join(o.runtime[:5])}{' ...' if len(o.runtime) > 5 else ''})"
        notes = "".join(f"; {m}" for m in outcome.messages)
        out.append(f"{label}: {verdict}{notes} ({outcome.round_trips} SSH round trip{'s' if outcome.round_trips != 1 else ''})")
        for change in outcome.cgroup_changes:
            out.append(f"  {name}: cgroup {change}")
        if outcome.rejections:
            out.append(f"  {name}: " + quarantine.report(outcome.rejections).replace("\n", f"\n  {name}: "))
        if report.dry_run and outcome.tls:
            out += [f"  {name}: {line}" for line in outcome.tls]
        if outcome.no_certificate:
            out.append(f"  {name}: {len(outcome.no_certificate)} app(s) without their ACME certificate:")
            out += [f"  {name}:   {r}" for r in outcome.no_certificate]
    if report.held:
        out.append(f"{len(report.held)} customer(s) held back by their own inventory file; their files stay as they are on their host:")
        out += [f"  {r}" for r in sorted(quarantine.held_back(report.held))]
    failed = [n for n, o in report.outcomes.items() if not o.ok]
    if failed:
        out.append(f"{len(failed)} of {len(report.outcomes)} host(s) failed: {', '.join(failed)}.")
    elif not report.dry_run:
        out.append(f"Deploy complete on {len(report.outcomes)} host(s).")
    return "\n".join(out) + "\n"


def plan_host(root: Path | str, name: str) -> tuple[HostOutcome, dict[str, tuple[Problem, ...]]]:
    """Host ``name``'s plan, read from the server (a dry run of deploy for that host alone), and the
    customers held back by their own broken inventory file (their host is unknown: each plan names them)."""
    report = deploy(root, [name], dry_run=True)
    outcome = report.outcomes[name]
    if outcome.error is not None:
        raise HostctlError(f"host {name!r}: {outcome.error}")
    return outcome, report.held


@dataclass
class OfflinePlan:
    """A host's plan against what this machine recorded of it at its last deploy (no SSH)."""

    outcome: HostOutcome
    basis: str  # what the plan was made against, in words
    held: dict[str, tuple[Problem, ...]] = field(default_factory=dict)  # customers held back by their own broken file


def plan_offline(root: Path | str, name: str) -> OfflinePlan:
    """Host ``name``'s plan from the state the last deploy from this machine recorded (``deploycache``).

    Nothing recorded, or a last deploy that did not finish as planned: the plan is made against an
    empty host, and ``basis`` says why. The host's facts (cgroup hierarchy) come from the same record;
    without them vassals are rendered without cgroup lines.
    """
    root = os.path.abspath(root)
    inv = inventory_mod.load(root, partial=True)
    placement.select_hosts(inv, [name])
    view = placement.host_inventory(inv, name)
    state = deploycache.last_state(root, name)
    if state is not None and state.get("listing") is not None:
        text, facts = state["listing"], state.get("facts") or ""
        basis = f"the state recorded at the last deploy to {name!r} from this machine ({state['at']}); the server was not read"
        ident = None
    else:
        text, facts = remote.listing(Actual(Manifest(), {})), ""
        if state is None:
            basis = (f"nothing is recorded on this machine for host {name!r} (no deploy to it from here yet, or "
                     f"{deploycache.state_path(root, name)} was removed): planned against an empty host")
        else:
            basis = (f"the last deploy to {name!r} from this machine ({state['at']}) did not finish as planned "
                     f"({state.get('unknown')}), so its state is not known here: planned against an empty host")
        base = identity_mod.host_identity(inv.settings, name)  # no facts: no cgroup lines
        ident = replace(base, cgroup=cgroups.Hierarchy(None, why_off="the host's cgroups are not known offline"))
    rendered = render_host(inv, view, name, templates.environment(inv.root), facts, ident)
    hp = compare(inv, view, rendered, text, f"the record of host {name!r}")
    outcome = HostOutcome(name, plans=[hp.plan], runtime=limits_only(hp, hp.plan),
                          held=moved_out(hp.plan, name, placement.placed(inv)), tls=tlsship.plan_lines(view, hp.certs))
    return OfflinePlan(outcome, basis, dict(inv.held))


@dataclass
class HostRollback:
    plan: Plan
    messages: list[str]
    rejections: list[Rejection]
    target: int


def rollback_host(root: Path | str, name: str, customer: str | None, lock_timeout: float = remote.LOCK_WAIT) -> HostRollback:
    """Put host ``name``'s previous generation back live (only ``customer``'s files, if given): the engine
    there plans it from the generations it keeps, and applies it like a deploy."""
    root = os.path.abspath(root)
    inv = inventory_mod.load(root)
    placement.select_hosts(inv, [name])
    view = placement.host_inventory(inv, name)
    s = view.settings
    ident = identity_mod.host_identity(inv.settings, name)
    job = Job(apply_mod.paths(s), nginx.engine_nginx(s, templates.environment(inv.root)), s.nginx.listen, host=name,
              emperor_freq=s.emperor.freq, lock_timeout=lock_timeout,
              vassal_groups={c.name: c.user for c in view.customers} if ident.per_customer else {})
    conn = ssh.connect(inv.settings.hosts[name], root, name)
    try:
        done = ssh.execute(conn, shipping.command(s.state_dir, ["rollback", *([customer] if customer else [])]),
                           shipping.payload(job.to_dict()))
    finally:
        conn.close()
    answer = shipping.answer(done.output)
    if not answer:
        raise HostctlError(f"host {name!r}: the engine failed there (exit {done.status}):\n{(done.output + done.errors).strip()[-2000:]}")
    if answer.get("error"):
        raise HostctlError(f"host {name!r}: {answer['error']}")
    from hostctl.engine.core.plan import Change

    changes = tuple(Change(a, p, k, c, "", None, None, drift=d, mode_only=m) for a, p, k, c, d, m in answer["changes"])
    return HostRollback(Plan(changes, (), Manifest()), answer["messages"], [Rejection(*r) for r in answer["rejections"]],
                        answer["target"])
