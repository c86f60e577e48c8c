"""The inventory's schema: settings (hostctl.yaml) and customers (customers/NAME.yaml).

Pydantic models with ``extra='forbid'`` so typos are errors, ``strict`` so YAML
types are taken as written, and the checks in ``values.py`` on every string that
reaches a rendered file. The models are frozen: loading builds them once and
everything downstream treats them as plain values.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from hostctl.inventory import values

Name = Annotated[str, AfterValidator(values.name)]
AppName = Annotated[str, AfterValidator(lambda v: values.name(v, "app name"))]
WorkerName = Annotated[str, AfterValidator(lambda v: values.name(v, "worker name"))]
UserName = Annotated[str, AfterValidator(lambda v: values.name(v, "user name"))]
Domain = Annotated[str, AfterValidator(values.domain)]
HostName = Annotated[str, AfterValidator(values.host_name)]
EnvKey = Annotated[str, AfterValidator(values.env_key)]
PathStr = Annotated[str, AfterValidator(values.path)]
SettingsPath = Annotated[str, AfterValidator(values.settings_path)]
UrlPrefix = Annotated[str, AfterValidator(values.url_prefix)]
WsgiSpec = Annotated[str, AfterValidator(values.wsgi)]
Listen = Annotated[str, AfterValidator(values.listen)]
ListenV6 = Annotated[str, AfterValidator(values.listen_v6)]
Size = Annotated[int, BeforeValidator(values.size)]
AbsPath = Annotated[str, AfterValidator(values.absolute_path)]
Command = Annotated[str, AfterValidator(values.command)]
CronSchedule = Annotated[str, AfterValidator(values.cron_schedule)]


def _env_value(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        kind = "true/false" if isinstance(value, bool) else type(value).__name__
        raise ValueError(f"{value!r} is a {kind}, not a string; quote it in YAML (e.g. \"{value}\")")
    return values.env_value(str(value))


EnvValue = Annotated[str, BeforeValidator(_env_value)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Limits(Strict):
    """One resource budget per customer, shared by all of its apps."""

    memory: Size | None = None
    cpu: float | None = Field(default=None, gt=0, le=1024)
    pids: int | None = Field(default=None, ge=8, le=1_000_000)


class AppTuning(Strict):
    """Per-app settings that hostctl.yaml's ``defaults:`` may also set."""

    processes: int = Field(default=2, ge=1, le=256)
    threads: int = Field(default=1, ge=1, le=256)
    harakiri: int = Field(default=60, ge=0, le=86400)  # seconds; 0 turns it off
    max_requests: int = Field(default=5000, ge=0, le=10_000_000)  # 0 turns it off
    reload_on_rss: Size | None = None  # recycle a worker that grows past this
    limit_post: Size = 100 << 20  # also nginx's client_max_body_size
    listen: int = Field(default=128, ge=16, le=65535)  # socket backlog
    # Density (see render/ondemand.py): the Emperor holds the socket and starts the app on its
    # first request; after `idle` seconds without one the app exits until the next.
    on_demand: bool = False
    idle: int = Field(default=300, ge=2, le=86400)  # seconds; only for on_demand apps
    # Shared resources (see the README's "Security model"): requests nginx handles for this app at
    # once (limit_conn per server block; past it, connections are closed), open files per process of its vassal
    # (RLIMIT_NOFILE, soft and hard), and a private /tmp (its customer's <state_dir>/tmp/<customer>, shared by
    # the customer's apps, in its own mount namespace; unset: on unless a directory it needs is /tmp itself).
    # tmp_size is no longer used (that directory is on disk, see privatetmp); kept so files that set it load.
    connections: int = Field(default=100, ge=1, le=1_000_000)
    open_files: int = Field(default=4096, ge=64, le=1_048_576)
    private_tmp: bool | None = None
    tmp_size: Size = 64 << 20
    env: dict[EnvKey, EnvValue] = Field(default_factory=dict)


class Tls(Strict):
    """Per-app ``tls:``: the operator's certificate and key, or ``acme: true`` (see render/tls.py)."""

    certificate: PathStr | None = None  # PEM: the certificate, then its intermediates
    key: PathStr | None = None
    acme: bool = False
    https_only: bool = True  # plain HTTP redirects to HTTPS (except the ACME challenge path)
    hsts: bool = False  # Strict-Transport-Security with settings' tls.hsts_max_age

    @model_validator(mode="after")
    def _one_source(self) -> "Tls":
        if self.acme and (self.certificate or self.key):
            raise ValueError("give either 'certificate' and 'key' or 'acme: true', not both")
        if not self.acme and not (self.certificate and self.key):
            raise ValueError("needs 'certificate' and 'key' (PEM files), or 'acme: true'")
        return self


class Probe(Strict):
    """After a reload, GET ``path`` through nginx with the app's Host header; another status rolls the customer back."""

    path: str = Field(default="/", pattern=r"^/[A-Za-z0-9._~!$&'()*+,;=:@/?%-]*$", max_length=1024)
    status: int = Field(default=200, ge=100, le=599)
    timeout: float = Field(default=5, gt=0, le=300)  # seconds, waiting for the app to start included


class Cron(Strict):
    """One scheduled job of an app (run by the app's uWSGI master, as the customer; see render/lifecycle.py)."""

    schedule: CronSchedule
    command: Command


class Release(Strict):
    """``release:``: how `hostctl release` builds and switches the app's code (see releases.py)."""

    build: list[Command] = Field(default_factory=list)  # in the new release, before anything is switched
    before_switch: list[Command] = Field(default_factory=list)  # e.g. migrate; a failure leaves the old release live
    after_switch: list[Command] = Field(default_factory=list)  # in the live release, after the health check
    keep: int = Field(default=5, ge=2, le=100)  # releases kept on each server (older ones are pruned)


class App(AppTuning):
    # false: the app stays in the inventory but no vassal runs and nginx answers 503 (`hostctl status`: stopped)
    enabled: bool = True
    domains: list[Domain] = Field(min_length=1)
    wsgi: WsgiSpec
    chdir: PathStr | None = None
    virtualenv: PathStr | None = None
    static: dict[UrlPrefix, PathStr] = Field(default_factory=dict)
    tls: Tls | None = None  # HTTPS (see the README's TLS section)
    probe: Probe | None = None  # off unless set (see engine/probe.py)
    # Released apps (see render/lifecycle.py): `hostctl release` puts code in <root>/releases/<id> and points
    # <root>/current at it; the app runs from there (chdir and virtualenv are derived, not given).
    root: PathStr | None = None
    release: Release | None = None  # hooks and pruning of `hostctl release` (needs root)
    workers: dict[WorkerName, Command] = Field(default_factory=dict)  # background processes, restarted with the app
    cron: list[Cron] = Field(default_factory=list)

    @model_validator(mode="after")
    def _released(self) -> "App":
        if self.root is not None and (self.chdir is not None or self.virtualenv is not None):
            raise ValueError("with 'root', the app runs in <root>/current and its virtualenv is <root>/current/.venv; "
                             "remove 'chdir' and 'virtualenv'")
        if self.release is not None and self.root is None:
            raise ValueError("'release' needs 'root' (the directory that holds the app's releases)")
        return self


class Customer(Strict):
    user: UserName | None = None  # Unix user the vassals run as; derived from the name if absent
    host: Name | None = None  # multi-host: the server in hostctl.yaml's hosts: that serves it
    limits: Limits = Field(default_factory=Limits)
    # KEY=VALUE secrets merged into every app's env (an app's own env wins); root-only (envfile.py)
    env_file: PathStr | None = None
    apps: dict[AppName, App] = Field(min_length=1)


class Defaults(Strict):
    """``defaults:`` in hostctl.yaml: app settings and limits every customer inherits."""

    processes: int | None = Field(default=None, ge=1, le=256)
    threads: int | None = Field(default=None, ge=1, le=256)
    harakiri: int | None = Field(default=None, ge=0, le=86400)
    max_requests: int | None = Field(default=None, ge=0, le=10_000_000)
    reload_on_rss: Size | None = None
    limit_post: Size | None = None
    listen: int | None = Field(default=None, ge=16, le=65535)
    on_demand: bool | None = None
    idle: int | None = Field(default=None, ge=2, le=86400)
    connections: int | None = Field(default=None, ge=1, le=1_000_000)
    open_files: int | None = Field(default=None, ge=64, le=1_048_576)
    private_tmp: bool | None = None
    tmp_size: Size | None = None
    env: dict[EnvKey, EnvValue] = Field(default_factory=dict)
    limits: Limits = Field(default_factory=Limits)


class NginxSettings(Strict):
    listen: Listen = "127.0.0.1:8080"
    # auto: a wildcard listen (80, 0.0.0.0:80) also gets [::]:PORT; off; or an IPv6 address ([::]:80)
    listen_v6: ListenV6 = "auto"
    # A default server on every listen closes connections for unknown names (444) and refuses
    # their TLS handshakes; false only if another default_server of the host owns these addresses.
    default_server: bool = True
    # Prints the live configuration (`nginx -T`) so customer domains that collide with servers
    # hostctl did not write are refused; default: `<binary> -T` when test_command is set; "" turns it off.
    dump_command: str | None = None
    binary: SettingsPath = "nginx"
    uwsgi_params: SettingsPath = "/etc/nginx/uwsgi_params"
    # `hostctl serve` and the nginx -t scaffold include it (the system nginx.conf already does):
    # static files get their type (text/css, not application/octet-stream).
    mime_types: SettingsPath = "/etc/nginx/mime.types"
    # Group of the nginx worker processes: sockets are made reachable to it alone.
    group: Name | None = None
    # Production: how to check and reload the system nginx. Unset: hostctl checks
    # candidates in its own scaffold and reloads the nginx of `hostctl serve`.
    test_command: str | None = None
    reload_command: str | None = None
    # Production: the master's pid file, so apply waits after reload_command until the old workers stop accepting.
    pid_file: SettingsPath | None = "/run/nginx.pid"


class EmperorSettings(Strict):
    binary: SettingsPath = "uwsgi"
    # seconds between directory scans; apply pokes the Emperor, so this is only the fallback (3: 0.5 %
    # of a core with 2,000 vassals, 7 % with 10,000; 1 s cost 1.6 % and 18 %, see bench/README.md)
    freq: int = Field(default=3, ge=1, le=60)
    plugin: Name = "python3"
    # The interpreter the uWSGI Python plugin embeds; customer virtualenvs must come from it.
    python: SettingsPath = "/usr/bin/python3"


class IsolationSettings(Strict):
    # auto: a Unix user per customer when hostctl runs as root, else the invoking user.
    users: Literal["auto", "per-customer", "invoker"] = "auto"
    user_prefix: str = Field(default="hc-", pattern=r"^[a-z][a-z0-9-]{0,8}$")
    # `apply --create-users`: None makes users without a home; a directory gives each one <home_dir>/<user>.
    home_dir: SettingsPath | None = None
    # The uids (and gids) of customer accounts: `user:` must name an account inside, and
    # --create-users makes them there. Below are system accounts (www-data, postgres, ...).
    uid_min: int = Field(default=20000, ge=1000, le=2**31 - 2)
    uid_max: int = Field(default=29999, ge=1000, le=2**31 - 2)
    # Names of the host itself that no customer may claim, besides its hostname and the names
    # /etc/hosts gives its loopback addresses (both read by `validate`, `plan` and `apply`).
    reserved_domains: list[HostName] = Field(default_factory=list)
    # Directories under which a `static:` target may lie besides the app's own chdir (relative to the inventory).
    static_roots: list[SettingsPath] = Field(default_factory=list)

    @model_validator(mode="after")
    def _range(self) -> "IsolationSettings":
        if self.uid_min > self.uid_max:
            raise ValueError(f"uid_min ({self.uid_min}) is above uid_max ({self.uid_max})")
        return self


class CgroupSettings(Strict):
    """Where customer cgroups live and which hierarchy enforces limits (see render/cgroups.py)."""

    # auto: cgroup v2 if it has the memory controller, else v1, else off (limits not enforced).
    mode: Literal["auto", "v1", "v2", "off"] = "auto"
    # v1: controllers are at <v1_root>/<memory|cpu|pids>; unset: where /proc/self/mounts says.
    v1_root: SettingsPath | None = None
    # v2: the cgroup2 mount; unset: where /proc/self/mounts says.
    v2_root: SettingsPath | None = None
    # One cgroup per customer at <root>/<parent>/<customer>.
    parent: Name = "hostctl"
    # Memory for all customers together: the limit of <parent> itself (v1 memory.limit_in_bytes,
    # v2 memory.max); unset: no limit beyond each customer's own.
    memory_budget: Size | None = None


class HostNginx(Strict):
    """How one server checks and reloads its system nginx (shell commands run there)."""

    test_command: str = "nginx -t -q"
    reload_command: str = "systemctl reload nginx"
    # nginx's master pid there: after reload_command the deploy waits until its old workers stop accepting
    pid_file: SettingsPath | None = "/run/nginx.pid"
    listen: Listen | None = None  # default: the inventory's nginx.listen


class HostIsolation(Strict):
    """A host's own isolation setting (unset: the inventory's ``isolation.users``)."""

    users: Literal["auto", "per-customer", "invoker"] | None = None


class Host(Strict):
    """One server of a multi-host inventory: how to reach it over SSH and where its files live."""

    address: Annotated[str, AfterValidator(values.address)]
    user: UserName = "root"  # the SSH user; not root: per-customer users need `become: sudo` (or users: invoker)
    become: Literal["sudo"] | None = None  # sudo: every command there runs as root through `sudo -n` (no password)
    isolation: HostIsolation = Field(default_factory=HostIsolation)
    port: int = Field(default=22, ge=1, le=65535)
    key_file: SettingsPath | None = None  # relative to the inventory; default: ssh-agent and ~/.ssh
    known_hosts: SettingsPath | None = None  # a known_hosts file: then unknown host keys are refused
    emperor_dir: AbsPath
    nginx_dir: AbsPath
    run_dir: AbsPath
    log_dir: AbsPath
    state_dir: AbsPath
    nginx: HostNginx = Field(default_factory=HostNginx)
    # bootstrap: where the Emperor's ini, its systemd unit and the nginx include go
    emperor_ini: AbsPath = "/etc/hostctl/emperor.ini"
    systemd_dir: AbsPath = "/etc/systemd/system"
    nginx_include: AbsPath = "/etc/nginx/conf.d/hostctl.conf"
    # TLS on this server: certificates shipped here (root-only; default <state_dir>/certs) and the
    # directory nginx serves ACME HTTP-01 challenges from (tokens written here by deploy)
    cert_dir: AbsPath | None = None
    acme_webroot: AbsPath = "/var/lib/hostctl-acme"  # as `init --production`: outside state_dir, which is 0700


class AcmeSettings(Strict):
    """The ACME CA and how hostctl paces its orders (see acme/schedule.py)."""

    directory: Annotated[str, AfterValidator(values.url)] = "https://acme-v02.api.letsencrypt.org/directory"
    email: Annotated[str, AfterValidator(values.email)] | None = None  # the CA's expiry and policy mails
    ca_bundle: SettingsPath | None = None  # trust this CA file for the ACME server's HTTPS (a private CA, pebble)
    interval: float = Field(default=2.0, ge=0, le=3600)  # seconds between two orders of one run
    batch: int = Field(default=50, ge=1, le=10_000)  # orders per run at most; the rest wait for the next run
    orders_per_3h: int = Field(default=250, ge=1, le=100_000)  # Let's Encrypt: 300 new orders per account per 3 h
    per_domain_per_week: int = Field(default=45, ge=1, le=100_000)  # Let's Encrypt: 50 per registered domain per week
    backoff: int = Field(default=600, ge=0, le=604800)  # seconds after a failure, doubled per further failure
    backoff_max: int = Field(default=86400, ge=0, le=2592000)


class TlsSettings(Strict):
    https_listen: Listen = "127.0.0.1:8443"
    https_listen_v6: ListenV6 = "auto"  # as nginx.listen_v6
    webroot: SettingsPath = "acme-challenge"  # nginx serves /.well-known/acme-challenge/ from here
    cert_dir: SettingsPath = "certs"  # ACME certificates: <customer>_<app>/{fullchain,privkey}.pem
    renew_days: int = Field(default=30, ge=1, le=365)  # renew certificates that expire within this many days
    hsts_max_age: int = Field(default=63072000, ge=0, le=10 * 31536000)  # Mozilla's recommendation: 2 years
    acme: AcmeSettings = Field(default_factory=AcmeSettings)


class LogSettings(Strict):
    """Rotation and retention of every log hostctl creates, set in one place (see engine/logrotate.py)."""

    # A log is rotated once it is larger than this. uWSGI checks its app log about once a
    # second itself (log-maxsize); nginx's per-app logs are checked every `check_interval`.
    max_size: Size = 10 << 20
    # Rotated files kept per nginx log; older ones are deleted. uWSGI keeps exactly one
    # (<app>.log.1): it rotates the customer's log itself, after dropping privileges.
    keep: int = Field(default=5, ge=1, le=1000)
    max_age: int | None = Field(default=None, ge=1, le=3650)  # days: rotated nginx logs older than this are deleted
    check_interval: int = Field(default=60, ge=1, le=86400)  # seconds between two logrotate runs (timer, `serve`)


class Settings(Strict):
    emperor_dir: SettingsPath = "vassals"
    nginx_dir: SettingsPath = "nginx"
    run_dir: SettingsPath = "run"
    log_dir: SettingsPath = "log"
    state_dir: SettingsPath = "state"
    nginx: NginxSettings = Field(default_factory=NginxSettings)
    emperor: EmperorSettings = Field(default_factory=EmperorSettings)
    isolation: IsolationSettings = Field(default_factory=IsolationSettings)
    cgroup: CgroupSettings = Field(default_factory=CgroupSettings)
    defaults: Defaults = Field(default_factory=Defaults)
    hosts: dict[Name, Host] = Field(default_factory=dict)  # multi-host; empty: everything is local
    default_host: Name | None = None  # where customers without 'host:' go
    tls: TlsSettings = Field(default_factory=TlsSettings)
    logs: LogSettings = Field(default_factory=LogSettings)


TUNING_FIELDS = tuple(name for name in AppTuning.model_fields if name != "env")
