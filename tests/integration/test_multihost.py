"""Multi-host deploys over real SSH: one real sshd per simulated host, each with its own directories.

No SSH is mocked: hostctl logs in with a key generated here, checks the host
keys against a known_hosts file written here, and runs its script in a real
shell on each "host" (this machine, through sshd on its own loopback port).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from hostctl.targets import deploy
from hostctl.engine import nginx
from hostctl.inventory import placement
from hostctl.render import templates
from hostctl.plan.manifest import sha256
from hostctl.inventory.schema import Settings
from tests.harness import Sandbox
from tests.sshd import SshHosts, hosts_for

pytestmark = pytest.mark.integration

FABFILE_DIR = str(Path(__file__).resolve().parents[2] / "hostctl" / "fabfile")


class Fleet:
    """A multi-host inventory (a Sandbox) whose hosts are real sshd servers."""

    def __init__(self, box: Sandbox, ssh: SshHosts):
        self.box, self.ssh = box, ssh
        self.settings = yaml.safe_load((box.inventory / "hostctl.yaml").read_text())
        self.settings["hosts"] = {}

    def add_host(self, name: str, **extra: object) -> None:
        host = self.ssh.start(name)
        self.settings["hosts"][name] = host.settings(**extra)
        self.box.write_settings(self.settings)

    def customer(self, name: str, host: str, greeting: str = "v1", domains: list[str] | None = None) -> None:
        app = self.box.echo_app(domains or [f"{name}.example"], env={"CUSTOMER": name, "GREETING": greeting})
        self.box.write_customer(name, {"host": host, "apps": {"web": app}})

    def root(self, host: str) -> Path:
        return self.ssh.hosts[host].root

    def files(self, host: str) -> dict[str, bytes]:
        """The vassals and server blocks on ``host``."""
        root = self.root(host)
        return {f"{d}/{p.name}": p.read_bytes() for d in ("emperor", "nginx") if (root / d).is_dir()
                for p in sorted((root / d).iterdir()) if p.is_file()}

    def manifest(self, host: str) -> dict:
        return json.loads((self.root(host) / "state" / "manifest.json").read_text())["files"]

    def deploy(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """`hostctl deploy ARGS` as a subprocess: the command line, its output and exit status."""
        return self.box.hostctl("deploy", *args, check=check)

    def deploy_here(self, hosts: tuple[str, ...] = (), dry_run: bool = False) -> subprocess.CompletedProcess:
        """The same in this process (no interpreter start): what `deploy` prints and its exit status."""
        report = deploy.deploy(self.box.inventory, hosts, dry_run=dry_run)
        return subprocess.CompletedProcess(["deploy"], 0 if report.ok else 1, deploy.render_report(report), "")


@pytest.fixture
def fleet(monkeypatch: pytest.MonkeyPatch) -> Iterator[Fleet]:
    box = Sandbox()
    monkeypatch.setenv("XDG_CACHE_HOME", str(box.root / "cache"))  # deploycache, for this test alone
    with hosts_for(box) as ssh:
        yield Fleet(box, ssh)


def _events(fleet: Fleet) -> list[str]:
    path = fleet.box.root / "events"
    return path.read_text().split() if path.exists() else []


def test_deploy_to_two_hosts_no_op_one_change_move_and_failures(fleet: Fleet) -> None:
    events = fleet.box.root / "events"
    for name in ("a", "b"):
        fleet.add_host(name, nginx={"test_command": "true", "reload_command": f"echo {name}-reload >> {events}"},
                       emperor_ini=str(fleet.box.root / "hosts" / name / "etc" / "emperor.ini"),
                       systemd_dir=str(fleet.box.root / "hosts" / name / "etc" / "systemd"),
                       nginx_include=str(fleet.box.root / "hosts" / name / "etc" / "nginx-hostctl.conf"))
    fleet.customer("acme", "a")
    fleet.customer("initech", "a")
    fleet.customer("globex", "b")

    # bootstrap's directory and file part (apt-get and systemctl skipped: this is not a fresh server)
    booted = fleet.box.hostctl("bootstrap", "--host", "a", "--files-only")
    assert "Host 'a' is ready" in booted.stdout
    etc = fleet.root("a") / "etc"
    assert f"emperor = {fleet.root('a')}/emperor" in (etc / "emperor.ini").read_text()
    assert f"ExecStart=/usr/bin/uwsgi --ini {etc}/emperor.ini" in (etc / "systemd" / "hostctl-emperor.service").read_text()
    assert f"include {fleet.root('a')}/nginx/*.conf;" in (etc / "nginx-hostctl.conf").read_text()
    assert all((fleet.root("a") / d).is_dir() for d in ("emperor", "nginx", "run", "log", "state"))
    assert oct((fleet.root("a") / "state").stat().st_mode & 0o777) == "0o700"

    # first deploy: every host gets exactly its customers
    dry = fleet.deploy("--dry-run")
    assert "a: 4 to add, 0 to change, 0 to remove" in dry.stdout and "b: 2 to add" in dry.stdout
    assert fleet.files("a") == {} and fleet.files("b") == {}
    first = fleet.deploy()
    assert "a: 4 added, 0 changed, 0 removed; 4 file(s) uploaded; nginx reloaded" in first.stdout, first.stdout
    assert "b: 2 added, 0 changed, 0 removed; 2 file(s) uploaded; nginx reloaded" in first.stdout
    assert sorted(fleet.files("a")) == ["emperor/acme_web.ini", "emperor/initech_web.ini", "nginx/acme_web.conf", "nginx/initech_web.conf"]
    assert sorted(fleet.files("b")) == ["emperor/globex_web.ini", "nginx/globex_web.conf"]
    for host in ("a", "b"):
        manifest = fleet.manifest(host)
        assert {os.path.relpath(p, fleet.root(host)) for p in manifest} == set(fleet.files(host))
        for path, entry in manifest.items():
            assert entry["sha256"] == sha256(Path(path).read_bytes())
    assert b"env = GREETING=v1" in fleet.files("b")["emperor/globex_web.ini"]
    assert f"unix:{fleet.root('a')}/run/acme/web.sock".encode() in fleet.files("a")["nginx/acme_web.conf"]
    run_acme = fleet.root("a") / "run" / "acme"
    assert oct(run_acme.stat().st_mode & 0o7777) == "0o2750"
    assert sorted(_events(fleet)) == ["a-reload", "b-reload"]
    assert not any(".hostctl-" in p.name for p in fleet.root("a").rglob("*")), "staging files were left behind"
    # log retention on a server: bootstrap's logrotate.conf, run by the real logrotate, on the deployed layout
    access = fleet.root("a") / "log" / "acme" / "web.access.log"
    access.write_bytes(b"GET /\n" * (2 << 20))  # 12 MiB, past the default logs.max_size (10M)
    rotated = subprocess.run(["logrotate", "-s", str(fleet.root("a") / "state" / "logrotate.status"), str(etc / "logrotate.conf")],
                             capture_output=True, text=True)
    assert rotated.returncode == 0, rotated.stderr
    assert access.stat().st_size == 0 and (access.parent / "web.access.log.1").stat().st_size == 12 << 20

    # no-op: nothing is uploaded, nothing touched, nothing reloaded (through the Python API to see the uploads)
    stat_before = {h: {p: os.stat(p) for p in fleet.manifest(h)} for h in ("a", "b")}
    report = deploy.deploy(fleet.box.inventory)
    assert report.ok and all(not o.changed and o.uploaded == [] for o in report.outcomes.values())
    assert all(o.round_trips == 1 for o in report.outcomes.values()), "a host in sync costs one SSH command"
    assert {h: {p: os.stat(p) for p in fleet.manifest(h)} for h in ("a", "b")} == stat_before
    assert len(_events(fleet)) == 2
    # a hand edit on a host is found although the inventory did not change (and put right)
    edited = fleet.root("a") / "nginx" / "acme_web.conf"
    original = edited.read_bytes()
    edited.write_bytes(original + b"# edited by hand\n")
    fixed = fleet.deploy_here()
    assert "~ " + str(edited) + "  (drift: edited outside hostctl; apply overwrites it)" in fixed.stdout, fixed.stdout
    assert "a: 0 added, 1 changed, 0 removed; 1 file(s) uploaded; nginx reloaded" in fixed.stdout
    assert edited.read_bytes() == original and len(_events(fleet)) == 3
    # the same through the shipped fabfile
    fab = subprocess.run([os.path.join(os.path.dirname(sys.executable), "fab"), "-r", FABFILE_DIR, "status",
                          "--inventory", str(fleet.box.inventory)], capture_output=True, text=True, timeout=60)
    assert fab.returncode == 0 and "a: no changes" in fab.stdout and "b: no changes" in fab.stdout, fab

    # a change on one host only: b's vassal is rewritten (later mtime second), a is untouched, no reload
    fleet.customer("globex", "b", greeting="v2")
    a_before = {p: os.stat(p) for p in fleet.manifest("a")}
    vassal_b = fleet.root("b") / "emperor" / "globex_web.ini"
    old_mtime = int(vassal_b.stat().st_mtime)
    changed = fleet.deploy_here(("b",))
    assert "b: 0 added, 1 changed, 0 removed; 1 file(s) uploaded" in changed.stdout and "a:" not in changed.stdout
    # all hosts, b changed again: a's inputs did not change and it answers its recorded digest, so it is not
    # even rendered; b is planned from the listing recorded by the last deploy (no full read) and updated
    fleet.customer("globex", "b", greeting="v2b")
    again = deploy.deploy(fleet.box.inventory)
    assert [(n, o.changed, o.rendered, o.round_trips) for n, o in again.outcomes.items()] == [("a", False, False, 1), ("b", True, True, 2)]
    fleet.customer("globex", "b", greeting="v2")
    fleet.deploy_here()
    assert "nginx reloaded" not in changed.stdout and len(_events(fleet)) == 3
    assert b"env = GREETING=v2" in vassal_b.read_bytes() and int(vassal_b.stat().st_mtime) > old_mtime
    assert {p: os.stat(p) for p in fleet.manifest("a")} == a_before

    # a move: initech goes from a to b; b serves it (reload) before a removes it (reload)
    fleet.customer("initech", "b")
    dry = fleet.deploy_here(dry_run=True)
    assert "move: 'initech' from 'a' to 'b'; 'b' serves it before 'a' removes it." in dry.stdout
    moved = fleet.deploy_here()
    assert "moved: 'initech' from 'a' to 'b' ('b' was deployed first)." in moved.stdout, moved.stdout
    assert _events(fleet)[3:] == ["b-reload", "a-reload"]
    assert sorted(fleet.files("a")) == ["emperor/acme_web.ini", "nginx/acme_web.conf"]
    assert "emperor/initech_web.ini" in fleet.files("b")
    assert not any("initech" in p for p in fleet.manifest("a"))

    # one host unreachable: reported, the other still deploys, exit status 1
    fleet.ssh.stop_one("b")
    fleet.customer("acme", "a", greeting="v3")
    fleet.customer("globex", "b", greeting="v3")
    partial = fleet.deploy(check=False)
    assert partial.returncode == 1
    assert "b: FAILED: cannot connect to root@127.0.0.1" in partial.stdout and "1 of 2 host(s) failed: b." in partial.stdout
    assert "a: 0 added, 1 changed, 0 removed" in partial.stdout
    assert b"GREETING=v3" in fleet.files("a")["emperor/acme_web.ini"]

    # a customer moving to the unreachable host stays where it is
    fleet.customer("acme", "b", greeting="v3")
    kept = fleet.deploy_here()
    assert kept.returncode == 1
    assert "kept 'acme' here: it moved to 'b', but its deploy failed" in kept.stdout, kept.stdout
    assert "emperor/acme_web.ini" in fleet.files("a")
    # a still runs acme, so it keeps acme's runtime record: after a reboot, restore brings back its directories
    # (and cgroup limits, where the host has them), as for every customer a serves
    record = fleet.root("a") / "state" / "runtime" / "acme.json"
    assert record.is_file(), sorted(p.name for p in record.parent.iterdir())
    subprocess.run(["rm", "-rf", str(fleet.root("a") / "run" / "acme")], check=True)  # "reboot": /run is empty
    restored = fleet.box.hostctl("restore", "--state-dir", str(fleet.root("a") / "state"))
    assert "1 customer(s) restored, 0 failed." in restored.stdout, restored
    assert (fleet.root("a") / "run" / "acme").is_dir()


def test_a_customer_whose_server_block_breaks_nginx_t_on_a_host_is_quarantined_there(fleet: Fleet) -> None:
    """A real `nginx -t` on host a rejects acme's new server block: acme keeps its old files there (quarantined),
    initech on the same host and globex on b go live."""
    env = templates.environment(None)
    for name in ("a", "b"):
        root = fleet.box.root / "hosts" / name
        prefix = root / "nginx-test"
        (prefix / "tmp").mkdir(parents=True)
        settings_nginx = yaml.safe_load((fleet.box.inventory / "hostctl.yaml").read_text())["nginx"]
        conf = nginx.scaffold(Settings(nginx=settings_nginx), env, str(prefix), f"{root}/nginx/*.conf")
        (prefix / "nginx.conf").write_text(conf)
        fleet.add_host(name, nginx={"test_command": f"nginx -t -q -p {prefix} -c {prefix}/nginx.conf -e stderr",
                                    "reload_command": "true"})
    fleet.customer("acme", "a")
    fleet.customer("initech", "a")
    fleet.customer("globex", "b")
    fleet.deploy_here()
    acme_before = {k: v for k, v in fleet.files("a").items() if "acme" in k}
    acme_manifest = {p: e for p, e in fleet.manifest("a").items() if "acme" in p}

    # a server block nginx rejects, for acme only (a bogus directive); everyone's domains change
    templates_dir = fleet.box.inventory / "templates"
    templates_dir.mkdir()
    original = (Path(templates.packaged_templates()) / "server.conf.j2").read_text()
    (templates_dir / "server.conf.j2").write_text(original.replace(
        "    client_max_body_size", "{% if customer.name == 'acme' %}    bogus_directive on;\n{% endif %}    client_max_body_size"))
    for name, host in (("acme", "a"), ("initech", "a"), ("globex", "b")):
        fleet.customer(name, host, domains=[f"{name}.example", f"www.{name}.example"])
    result = fleet.deploy_here()
    assert result.returncode == 1
    assert "a: 1 customer(s) quarantined; their last-known-good files stay live:" in result.stdout, result.stdout
    assert 'acme_web.conf: nginx -t: unknown directive "bogus_directive"' in result.stdout
    assert "a: 0 added, 1 changed, 0 removed; 1 file(s) uploaded; nginx reloaded" in result.stdout
    assert "b: 0 added, 1 changed, 0 removed; 1 file(s) uploaded; nginx reloaded" in result.stdout
    assert {k: v for k, v in fleet.files("a").items() if "acme" in k} == acme_before
    assert {p: e for p, e in fleet.manifest("a").items() if "acme" in p} == acme_manifest
    assert b"www.initech.example" in fleet.files("a")["nginx/initech_web.conf"]
    assert b"www.globex.example" in fleet.files("b")["nginx/globex_web.conf"]
    quarantined = json.loads((fleet.root("a") / "state" / "quarantine.json").read_text())["customers"]
    assert list(quarantined) == ["acme"] and "bogus_directive" in quarantined["acme"]["reason"]


def test_a_deployed_host_serves_over_http(fleet: Fleet, sandbox: Sandbox, make_server) -> None:
    """Host 'web' is a real Emperor + nginx (`hostctl serve` on its directories); deploy to it over SSH, then HTTP."""
    web = sandbox  # the host's own directories, served by a real Emperor and nginx
    server = make_server(web)
    serve = web.root / "run" / "serve"
    host = fleet.ssh.start("web")
    fleet.settings["hosts"]["web"] = host.settings(
        **{key: str(web.root / d) for key, d in (("emperor_dir", "vassals"), ("nginx_dir", "nginx"), ("run_dir", "run"),
                                                  ("log_dir", "log"), ("state_dir", "state"))},
        nginx={"listen": f"127.0.0.1:{web.port}",
               "test_command": f"nginx -t -q -p {serve} -c {serve}/nginx.conf -e stderr",
               "reload_command": f"kill -HUP $(cat {serve}/nginx.pid)", "pid_file": f"{serve}/nginx.pid"})
    fleet.box.write_settings(fleet.settings)
    fleet.customer("acme", "web")
    fleet.customer("globex", "web")
    first_deploy = fleet.deploy()
    assert "its old workers no longer accept connections" in first_deploy.stdout, first_deploy.stdout
    first = {name: server.wait_json(f"{name}.example") for name in ("acme", "globex")}

    # Deploy means live: requests fired the moment deploy returns see only the new state.
    old_answers = []
    for i in range(5):
        fleet.customer("initech", "web", greeting=f"i{i}", domains=["initech.example", f"d{i}.initech.example"])
        fleet.deploy_here()
        for host in ("initech.example", f"d{i}.initech.example"):
            status, body = server.request(host)
            if status != 200 or json.loads(body)["greeting"] != f"i{i}":
                old_answers.append((host, status, body[:60]))
    (fleet.box.inventory / "customers" / "initech.yaml").unlink()
    fleet.deploy_here()
    # gone: nginx's default server closes the connection without an answer (444), five times of five
    old_answers += [("initech.example", "answered") for _ in range(5) if not server.unserved("initech.example")]
    assert old_answers == [], old_answers
    assert {n: (d["customer"], d["greeting"]) for n, d in first.items()} == {"acme": ("acme", "v1"), "globex": ("globex", "v1")}

    # one customer changes: its vassal is gracefully reloaded, the other keeps its workers
    fleet.customer("globex", "web", greeting="v2")
    fleet.deploy_here()
    after = server.wait_json("globex.example", lambda d: d["greeting"] == "v2")
    assert after["pid"] != first["globex"]["pid"]
    assert server.get_json("acme.example")["pid"] == first["acme"]["pid"]

    # acme becomes on-demand: the Emperor must let go of the running vassal before it sees the companion
    app = fleet.box.echo_app(["acme.example"], env={"CUSTOMER": "acme", "GREETING": "v1"}, on_demand=True)
    fleet.box.write_customer("acme", {"host": "web", "apps": {"web": app}})
    toggled = fleet.deploy_here()
    assert "restarted (on-demand mode changed): acme_web.ini" in toggled.stdout, toggled.stdout
    assert (web.root / "vassals" / "acme_web.ini.socket").exists()
    woken = server.wait_json("acme.example")
    assert woken["customer"] == "acme" and woken["pid"] != first["acme"]["pid"]

    # the customer leaves the host: it is no longer served there
    (fleet.box.inventory / "customers" / "globex.yaml").unlink()
    fleet.deploy_here()
    server.wait_unserved("globex.example")
    assert server.get_json("acme.example")["customer"] == "acme"


def test_large_output_and_input_arrive_whole(fleet: Fleet) -> None:
    """A host's state listing can be megabytes; none of it may be lost when the exit status comes first."""
    from hostctl.targets import ssh
    from hostctl.inventory.schema import Host

    fleet.add_host("x")
    host = Host.model_validate(fleet.settings["hosts"]["x"])
    conn = ssh.connect(host, str(fleet.box.inventory))
    try:
        for _ in range(5):
            done = ssh.execute(conn, "head -c 3000000 /dev/zero | tr '\\0' x; echo done >&2")
            assert (done.status, len(done.output), done.errors.strip().splitlines()[-1]) == (0, 3000000, "done")
        payload = os.urandom(4 << 20)
        assert ssh.execute(conn, "sha256sum").output[:64] == sha256(b"")
        assert ssh.execute(conn, "sha256sum", payload).output[:64] == sha256(payload)
    finally:
        conn.close()


def test_missing_customer_users_stop_that_host(fleet: Fleet) -> None:
    """Per-customer isolation: vassals run as hc-<customer>; a host without those users gets nothing."""
    fleet.add_host("a")
    fleet.settings["isolation"] = {"users": "per-customer"}
    fleet.box.write_settings(fleet.settings)
    fleet.customer("nosuchuser", "a")
    result = fleet.deploy_here()
    assert result.returncode == 1
    assert ("a: FAILED: these Unix users do not exist on host 'a': hc-nosuchuser; nothing was changed "
            "(create them, or run with --create-users)") in result.stdout, result.stdout
    assert fleet.files("a") == {} and not (fleet.root("a") / "state" / "manifest.json").exists()


def test_a_host_changed_or_locked_by_another_deploy_is_left_alone(fleet: Fleet, monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine holds the host's lock and applies only onto the state its plan was made from."""
    from hostctl.inventory import loader as inventory
    from hostctl.targets import remote, ssh
    from hostctl.targets import shipping

    fleet.add_host("a")
    fleet.customer("acme", "a")
    fleet.deploy_here()
    fleet.customer("acme", "a", greeting="v2")
    deployment = deploy.Deployment(inventory.load(fleet.box.inventory), ["a"])
    try:
        hp = deployment.read_plan("a", deploy.HostOutcome("a"))
        assert [c.action for c in hp.plan.changes] == ["update"]
        state_dir = deployment.views["a"].settings.state_dir

        def send() -> dict:
            job = deployment.job("a", hp.plan, hp)
            done = ssh.execute(deployment.connections["a"], shipping.command(state_dir, ["apply"]), shipping.payload(job.to_dict()))
            return shipping.answer(done.output) | {"status": done.status}

        # another apply or deploy holds the lock (a short wait here): nothing happens
        monkeypatch.setattr(remote, "LOCK_WAIT", 1)
        lock = fleet.root("a") / "state" / "apply.lock"
        holder = subprocess.Popen(["flock", str(lock), "sleep", "4"])
        try:
            subprocess.run(["sh", "-c", f"until ! flock -n {lock} true; do sleep 0.05; done"], timeout=10)
            locked = send()
        finally:
            holder.wait()
        assert locked["status"] == locked["code"] == 7 and "another hostctl apply" in locked["error"], locked
        assert b"GREETING=v1" in fleet.files("a")["emperor/acme_web.ini"]

        # the host changed after it was read (as if another deploy ran in between): nothing happens
        other = fleet.root("a") / "nginx" / "acme_web.conf"
        other.write_bytes(other.read_bytes() + b"# another deploy\n")
        changed = send()
        assert changed["status"] == changed["code"] == 8 and "the host changed since it was read" in changed["error"], changed
        assert b"GREETING=v1" in fleet.files("a")["emperor/acme_web.ini"] and other.read_bytes().endswith(b"# another deploy\n")
    finally:
        deployment.close()


def test_a_broken_customer_file_holds_back_that_customer_only(fleet: Fleet) -> None:
    """Partial failure over deploy: a customer whose own file is broken keeps its files on its host as they
    are (nothing removed), everyone else's changes are deployed, and deploy exits 1 naming it."""
    fleet.add_host("a", nginx={"test_command": "true", "reload_command": "true"})
    fleet.customer("acme", "a")
    fleet.customer("globex", "a")
    fleet.deploy()
    globex = {k: v for k, v in fleet.files("a").items() if "globex" in k}
    (fleet.box.inventory / "customers" / "globex.yaml").write_text("host: a\napps: [\n")
    fleet.customer("acme", "a", greeting="v2")
    dry = fleet.deploy("--dry-run", check=False)
    assert dry.returncode == 1 and "a: 0 to add, 1 to change, 0 to remove" in dry.stdout, dry.stdout
    # plan --host, like a local plan and like deploy: the others' changes shown, exit 1 naming the held customer
    # (README's exit table: 1 for customers held back, not 2 "changes pending", which would let a script apply
    # without anyone seeing the broken file)
    planned = fleet.box.hostctl("plan", "--host", "a", "--exit-code", check=False)
    assert planned.returncode == 1, planned
    assert "acme_web.ini" in planned.stdout and "globex" not in planned.stdout, planned.stdout
    assert "1 customer(s) held back by their own inventory file" in planned.stderr, planned.stderr
    assert "  globex: customers/globex.yaml:3: is not valid YAML: " in planned.stderr, planned.stderr
    result = fleet.deploy(check=False)
    assert result.returncode == 1, result
    assert "a: 0 added, 1 changed, 0 removed; 1 file(s) uploaded" in result.stdout, result.stdout
    assert "1 customer(s) held back by their own inventory file; their files stay as they are on their host:" in result.stdout
    assert "  globex: customers/globex.yaml:3: is not valid YAML: " in result.stdout
    assert b"env = GREETING=v2" in fleet.files("a")["emperor/acme_web.ini"]
    assert {k: v for k, v in fleet.files("a").items() if "globex" in k} == globex
    assert any("globex_web" in path for path in fleet.manifest("a"))
