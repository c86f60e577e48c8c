"""The job: everything the engine is told to do on one server, as plain data (JSON-able).

The control side loads, validates, renders and plans; it hands the engine a
``Job``: the host's paths and commands, the file changes (content, mode, the
customer they belong to), the manifest after them, customers already held back
by the read-back, the users that must exist, each customer's runtime record
(directories and cgroup), the probes, and where the files came from (for the
generation). ``to_dict``/``from_dict`` carry it over SSH as JSON.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping

from hostctl.engine.core.manifest import Entry, Manifest
from hostctl.engine.core.nginx import Nginx
from hostctl.engine.core.plan import Change
from hostctl.engine.core.probe import Target
from hostctl.engine.core.quarantine import Rejection
from hostctl.engine.core.runtime import CustomerRuntime, HostRuntime
from hostctl.engine.core.tlsfiles import ShippedCert

VERSION = 1


@dataclass(frozen=True)
class Paths:
    emperor_dir: str
    nginx_dir: str
    run_dir: str
    log_dir: str
    state_dir: str

    @property
    def manifest(self) -> str:
        return f"{self.state_dir}/manifest.json"

    @property
    def lock(self) -> str:
        return f"{self.state_dir}/apply.lock"

    @property
    def emperor_stats(self) -> str:
        return f"{self.run_dir}/emperor.stats"


@dataclass(frozen=True)
class Provenance:
    """Where the files come from, for the generation the engine records."""

    source: str = "apply"  # or "rollback"
    note: str = ""
    base: int | None = None
    origin: Mapping[str, int] | None = None
    inventory: Mapping[str, str] = field(default_factory=dict)  # the inventory's files (relative path -> text)


@dataclass(frozen=True)
class Job:
    paths: Paths
    nginx: Nginx
    listen: str  # where nginx answers on this server (for probes)
    host: str = ""  # its name in the inventory ("" locally)
    emperor_freq: int = 3
    lock_timeout: float = 120.0
    basis: str | None = None  # digest of the state the plan was made from (None: not checked)
    changes: tuple[Change, ...] = ()
    manifest: Manifest = field(default_factory=Manifest)  # after the changes
    rejections: tuple[Rejection, ...] = ()  # customers the control side held back (read-back)
    sockets: Mapping[str, str] = field(default_factory=dict)  # vassal path -> its socket (waited for after a start)
    vet: bool = True  # nginx -t on the candidates, quarantining the customers that break it
    probes: tuple[Target, ...] = ()  # for changed customers; failures are rolled back
    users: tuple[str, ...] = ()  # Unix users vassals drop to: must exist (or be created)
    create_users: bool = False
    home_dir: str | None = None
    uid_range: tuple[int, int] = (20000, 29999)  # where new customer users' uids and gids come from
    vassal_groups: Mapping[str, str] = field(default_factory=dict)  # customer -> group owning its vassals
    # The account rule (accounts.py), checked against this server's user database when set: nginx's user there
    # and nginx's group (None: that user's primary group). Customers' accounts are ``vassal_groups``.
    nginx_user: str | None = None
    nginx_group: str | None = None
    runtime: tuple[CustomerRuntime, ...] = ()  # new or changed runtime records
    host_runtime: HostRuntime | None = None
    customers: tuple[str, ...] | None = None  # every customer served here; None: exactly those in ``runtime``
    provenance: Provenance = field(default_factory=Provenance)
    purges: Mapping[str, str] = field(default_factory=dict)  # customer -> its user: remove-customer --purge (stopping.py)
    cert_dir: str | None = None  # where shipped certificates go (root-only)
    certs: tuple[ShippedCert, ...] = ()  # written before the server blocks that name them are checked

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": VERSION,
            "paths": asdict(self.paths), "nginx": asdict(self.nginx), "listen": self.listen, "host": self.host,
            "emperor_freq": self.emperor_freq, "lock_timeout": self.lock_timeout, "basis": self.basis,
            "changes": [asdict(c) for c in self.changes],
            "manifest": {p: {k: v for k, v in vars(e).items() if v is not None} for p, e in self.manifest.files.items()},
            "rejections": [[r.customer, r.file, r.reason] for r in self.rejections], "vet": self.vet, "sockets": dict(self.sockets),
            "probes": [asdict(t) for t in self.probes],
            "users": list(self.users), "create_users": self.create_users, "home_dir": self.home_dir,
            "uid_range": list(self.uid_range), "vassal_groups": dict(self.vassal_groups),
            "nginx_user": self.nginx_user, "nginx_group": self.nginx_group,
            "runtime": [r.to_json() for r in self.runtime],
            "host_runtime": self.host_runtime.to_json() if self.host_runtime else None,
            "customers": list(self.customers) if self.customers is not None else None, "purges": dict(self.purges),
            "provenance": {"source": self.provenance.source, "note": self.provenance.note, "base": self.provenance.base,
                           "origin": dict(self.provenance.origin) if self.provenance.origin is not None else None,
                           "inventory": dict(self.provenance.inventory)},
            "cert_dir": self.cert_dir, "certs": [asdict(c) for c in self.certs],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "Job":
        if data.get("version") != VERSION:
            raise ValueError(f"job version {data.get('version')!r}; this engine understands {VERSION}")
        change_fields = {f.name for f in fields(Change)}
        return cls(
            paths=Paths(**data["paths"]), nginx=Nginx(**data["nginx"]), listen=data["listen"], host=data.get("host", ""),
            emperor_freq=int(data.get("emperor_freq", 3)), lock_timeout=float(data.get("lock_timeout", 120)),
            basis=data.get("basis"),
            changes=tuple(Change(**{k: v for k, v in c.items() if k in change_fields}) for c in data.get("changes", ())),
            manifest=Manifest({p: Entry(**e) for p, e in data.get("manifest", {}).items()}),
            rejections=tuple(Rejection(*r) for r in data.get("rejections", ())), vet=bool(data.get("vet", True)), sockets=dict(data.get("sockets", {})),
            probes=tuple(Target(**t) for t in data.get("probes", ())),
            users=tuple(data.get("users", ())), create_users=bool(data.get("create_users")), home_dir=data.get("home_dir"),
            uid_range=tuple(data.get("uid_range", (20000, 29999))),
            vassal_groups=dict(data.get("vassal_groups", {})),
            nginx_user=data.get("nginx_user"), nginx_group=data.get("nginx_group"),
            runtime=tuple(CustomerRuntime.from_json(r) for r in data.get("runtime", ())),
            host_runtime=HostRuntime.from_json(data["host_runtime"]) if data.get("host_runtime") else None,
            customers=tuple(data["customers"]) if data.get("customers") is not None else None,
            provenance=Provenance(**data.get("provenance", {})), purges=dict(data.get("purges", {})),
            cert_dir=data.get("cert_dir"), certs=tuple(ShippedCert(**c) for c in data.get("certs", ())),
        )
