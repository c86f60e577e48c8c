"""Multi-host, the pure parts: placement checks, per-host views, hash plans, moves, the deploy and bootstrap scripts."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml

from hostctl.engine import apply as apply_mod
from hostctl.targets import bootstrap, deploy, remote
from hostctl.inventory import loader as inventory, placement
from hostctl.render import identity as identity_mod, templates
from hostctl.errors import HostctlError, InventoryError
from hostctl.plan.manifest import Entry, Manifest, sha256
from hostctl.plan.diff import make_plan
from hostctl.render.files import render
from tests.unit.test_validation import write_inventory

# Placement errors (cases/multihost_validation.yaml) run in tests/unit/test_validation.py.

HOSTS = """\
hosts:
  web1:
    address: 10.0.0.1
    emperor_dir: /srv/one/vassals
    nginx_dir: /srv/one/nginx
    run_dir: /srv/one/run
    log_dir: /srv/one/log
    state_dir: /srv/one/state
    nginx: {reload_command: "kill -HUP $(cat /srv/one/nginx.pid)", listen: "8081"}
  web2:
    address: 10.0.0.2
    user: deploy
    isolation: {users: invoker}  # no become: sudo, so it says so (else an error naming web2: tests/unit/test_become.py)
    emperor_dir: /srv/two/vassals
    nginx_dir: /srv/two/nginx
    run_dir: /srv/two/run
    log_dir: /srv/two/log
    state_dir: /srv/two/state
    emperor_ini: /srv/two/emperor.ini
    systemd_dir: /srv/two/systemd
    nginx_include: /srv/two/nginx-include.conf
default_host: web1
isolation: {users: auto}
"""


def customer(domain: str, host: str | None = None, **app: object) -> str:
    data: dict = {"apps": {"web": {"domains": [domain], "wsgi": "app:application", **app}}}
    if host:
        data["host"] = host
    return yaml.safe_dump(data)


@pytest.fixture
def inv(tmp_path: Path) -> inventory.Inventory:
    root = write_inventory(tmp_path / "inv", HOSTS, {
        "acme.yaml": customer("acme.example"),
        "globex.yaml": customer("globex.example", "web2"),
        "initech.yaml": customer("initech.example", "web2", on_demand=True),
    })
    return inventory.load(root)


def test_without_hosts_nothing_is_placed(tmp_path: Path) -> None:
    root = write_inventory(tmp_path / "inv", "emperor_dir: vassals\n", {"acme.yaml": customer("acme.example")})
    loaded = inventory.load(root)
    assert [c.host for c in loaded.customers] == [None]
    assert placement.placed(loaded) == {}
    placement.refuse_multi_host(loaded)  # a local inventory is fine


def test_host_views_render_each_host_with_its_own_paths(inv: inventory.Inventory) -> None:
    assert placement.placed(inv) == {"acme": "web1", "globex": "web2", "initech": "web2"}
    env = templates.environment(inv.root)
    one = placement.host_inventory(inv, "web1")
    two = placement.host_inventory(inv, "web2")
    assert [c.name for c in one.customers] == ["acme"] and [c.name for c in two.customers] == ["globex", "initech"]
    assert one.settings.nginx.listen == "8081" and two.settings.nginx.listen == inv.settings.nginx.listen
    assert one.settings.nginx.reload_command == "kill -HUP $(cat /srv/one/nginx.pid)"
    files_one = render(one, identity_mod.host_identity(inv.settings, "web1"), env)
    files_two = render(two, identity_mod.host_identity(inv.settings, "web2"), env)
    assert sorted(files_one) == ["/srv/one/nginx/acme_web.conf", "/srv/one/vassals/acme_web.ini"]
    assert sorted(files_two) == ["/srv/two/nginx/globex_web.conf", "/srv/two/nginx/initech_web.conf",
                                 "/srv/two/vassals/globex_web.ini", "/srv/two/vassals/initech_web.ini",
                                 "/srv/two/vassals/initech_web.ini.socket"]
    assert "unix:/srv/one/run/acme/web.sock" in files_one["/srv/one/nginx/acme_web.conf"].content
    # root logs in on web1: per-customer users (auto); web2 logs in as 'deploy' and says users: invoker
    assert "uid = hc-acme" in files_one["/srv/one/vassals/acme_web.ini"].content
    assert "uid =" not in files_two["/srv/two/vassals/globex_web.ini"].content


def test_local_commands_refuse_a_multi_host_inventory(inv: inventory.Inventory) -> None:
    with pytest.raises(HostctlError, match=r"use `hostctl deploy`"):
        placement.refuse_multi_host(inv)
    with pytest.raises(HostctlError, match=r"unknown host 'web7'; hosts in hostctl.yaml: web1, web2."):
        placement.select_hosts(inv, ["web1", "web7"])
    assert placement.select_hosts(inv, []) == ["web1", "web2"]


# --- reading a host: hashes instead of contents ----------------------------------------

def _answer(manifest: Manifest, files: dict[str, tuple[str, int]]) -> str:
    modes = "".join(f"{mode:o} {path}\n" for path, (_, mode) in files.items())
    sums = "".join(f"{sha256(content)}  {path}\n" for path, (content, _) in files.items())
    return f"{manifest.to_json() if manifest.files else ''}\n{remote.MODES_MARK}\n{modes}{remote.SHA_MARK}\n{sums}"


def test_plan_from_hashes(inv: inventory.Inventory) -> None:
    """The remote answer parsed back compares by hash: unchanged, changed, hand-edited, foreign, departed."""
    view = placement.host_inventory(inv, "web2")
    desired = render(view, identity_mod.host_identity(inv.settings, "web2"), templates.environment(inv.root))
    globex_ini, globex_conf = "/srv/two/vassals/globex_web.ini", "/srv/two/nginx/globex_web.conf"
    initech_ini = "/srv/two/vassals/initech_web.ini"
    gone = "/srv/two/vassals/oldco_web.ini"
    old = Manifest({
        globex_ini: Entry(sha256(desired[globex_ini].content), "vassal", "globex", "web"),
        globex_conf: Entry(sha256("old server block"), "nginx", "globex", "web"),
        gone: Entry(sha256("oldco"), "vassal", "oldco", "web"),
    })
    live = {
        globex_ini: (desired[globex_ini].content, 0o640),  # unchanged
        globex_conf: ("edited by hand", 0o644),  # drift
        initech_ini: ("someone else's", 0o644),  # not ours: a conflict
        gone: ("oldco", 0o640),  # its customer left: removed
        "/srv/two/nginx/other.conf": ("not ours, not wanted", 0o644),
    }
    actual = remote.parse_state(_answer(old, live), "host 'web2'")
    assert actual.manifest == old
    assert actual.files[globex_ini].digest == sha256(desired[globex_ini].content) and actual.files[globex_ini].mode == 0o640
    plan = make_plan(desired, actual)
    got = sorted((c.action, c.path, c.drift) for c in plan.changes)
    assert got == [
        ("create", "/srv/two/nginx/initech_web.conf", False),
        ("create", "/srv/two/vassals/initech_web.ini.socket", False),
        ("delete", gone, False),
        ("update", globex_conf, True),
    ]
    assert [c.path for c in plan.conflicts] == [initech_ini]
    assert plan.unchanged == 1


def test_parse_state_of_a_fresh_host_and_of_garbage() -> None:
    empty = remote.parse_state(f"\n{remote.MODES_MARK}\n{remote.SHA_MARK}\n", "host 'x'")
    assert empty.manifest == Manifest() and empty.files == {}
    with pytest.raises(HostctlError, match="host 'x': unexpected answer"):
        remote.parse_state("bash: find: command not found\n", "host 'x'")
    with pytest.raises(HostctlError, match="host 'x': the manifest is damaged"):
        remote.parse_state(f"{{not json\n{remote.MODES_MARK}\n{remote.SHA_MARK}\n", "host 'x'")


def test_read_command_lists_only_hostctl_kinds(inv: inventory.Inventory) -> None:
    command = remote.read_command(placement.host_inventory(inv, "web1").settings)
    assert "{ cat /srv/one/state/manifest.json 2>/dev/null || true; }" in command
    assert "find /srv/one/vassals -maxdepth 1 -type f \\( -name '*.ini' -o -name '*.ini.socket' \\)" in command
    assert "find /srv/one/nginx -maxdepth 1 -type f -name '*.conf'" in command
    assert subprocess.run(["sh", "-n", "-c", command]).returncode == 0


# --- moves ------------------------------------------------------------------------------

def test_a_move_is_held_back_on_the_old_host(inv: inventory.Inventory) -> None:
    """globex moved from web1 to web2: web1's plan removes it, but only after web2 serves it."""
    view = placement.host_inventory(inv, "web1")
    desired = render(view, identity_mod.host_identity(inv.settings, "web1"), templates.environment(inv.root))
    old = Manifest({p: Entry(sha256(f.content), f.kind, f.customer, f.app) for p, f in desired.items()})
    moved = {"/srv/one/vassals/globex_web.ini": "vassal", "/srv/one/nginx/globex_web.conf": "nginx",
             "/srv/one/vassals/gone_web.ini": "vassal"}
    for path, kind in moved.items():
        old.files[path] = Entry(sha256(path), kind, path.split("/")[-1].split("_")[0], "web")
    live = {p: (f.content, f.mode) for p, f in desired.items()} | {p: (p, 0o644) for p in moved}
    actual = remote.parse_state(_answer(old, live), "host 'web1'")
    plan = make_plan(desired, actual)
    assert sorted(c.customer for c in plan.changes) == ["globex", "globex", "gone"]
    assert deploy.moved_out(plan, "web1", placement.placed(inv)) == {"globex": "web2"}
    held = remote.hold_back(plan, old, ["globex"])
    assert [(c.action, c.customer) for c in held.changes] == [("delete", "gone")]
    assert set(held.manifest.files) == set(desired) | {"/srv/one/vassals/globex_web.ini", "/srv/one/nginx/globex_web.conf"}
    assert remote.hold_back(plan, old, []) is plan


# --- the job: what the engine is told to do on one host -----------------------------------

def _members(payload: bytes) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(payload), mode="r:gz") as tar:
        return {m.name: m for m in tar.getmembers()}


def _host(inv: inventory.Inventory, name: str) -> tuple:
    """One host's inventory view, identity, template environment and rendered files."""
    view = placement.host_inventory(inv, name)
    identity = identity_mod.host_identity(inv.settings, name)
    env = templates.environment(inv.root)
    return view, identity, env, render(view, identity, env)


def test_a_host_job_carries_its_paths_changes_users_and_runtime_as_json(inv: inventory.Inventory) -> None:
    from hostctl.engine.core.job import Job

    view, identity, env, desired = _host(inv, "web1")
    old = Manifest({"/srv/one/nginx/acme_web.conf": Entry(sha256("old"), "nginx", "acme", "web"),
                    "/srv/one/vassals/gone_web.ini": Entry(sha256("gone"), "vassal", "gone", "web")})
    live = {"/srv/one/nginx/acme_web.conf": ("old", 0o644), "/srv/one/vassals/gone_web.ini": ("gone", 0o640)}
    plan = make_plan(desired, remote.parse_state(_answer(old, live), "web1"))
    deployment = deploy.Deployment.__new__(deploy.Deployment)  # only the pure part: no SSH
    deployment.inv, deployment.views, deployment.env, deployment.create_users = inv, {"web1": view}, env, True
    deployment.basis = {"web1": "b" * 64}
    records, host_record = apply_mod.runtime_records(view, True, True, "www-data", None)
    hp = deploy.HostPlan(plan, remote.parse_state(_answer(old, live), "web1"), identity, records, host_record, True, desired)
    job = deployment.job("web1", plan, hp)
    assert Job.from_dict(json.loads(json.dumps(job.to_dict()))) == job
    assert job.paths.state_dir == "/srv/one/state" and job.basis == "b" * 64 and job.host == "web1"
    assert (job.nginx.test_command, job.nginx.reload_command) == ("nginx -t -q", "kill -HUP $(cat /srv/one/nginx.pid)")
    # changes planned from hashes carry no 'before' (the engine reads the live file it replaces)
    assert sorted((c.action, c.path, c.before) for c in job.changes) == [
        ("create", "/srv/one/vassals/acme_web.ini", None), ("delete", "/srv/one/vassals/gone_web.ini", None),
        ("update", "/srv/one/nginx/acme_web.conf", None)]
    assert job.users == ("hc-acme",) and job.create_users and job.vassal_groups == {"acme": "hc-acme"}
    [acme] = job.runtime
    assert [(d.path, oct(d.mode), d.owner, d.group) for d in acme.dirs] == [  # as layout.customer_dirs says
        ("/srv/one/state/tmp", "0o700", "root", "root"), ("/srv/one/state/tmp/acme", "0o1777", "root", "root"),
        ("/srv/one/run/acme", "0o2750", "hc-acme", "www-data"), ("/srv/one/log/acme", "0o750", "root", "@hc-acme"),
        ("/srv/one/log/acme/uwsgi", "0o750", "hc-acme", "@hc-acme")]
    assert [(d.path, oct(d.mode), d.owner, d.group) for d in job.host_runtime.shared] == [
        ("/srv/one/run/ondemand", "0o750", "root", "www-data")]
    assert set(job.provenance.inventory) == {"hostctl.yaml", "customers/acme.yaml"}
    assert "/HOSTCTL_SCAFFOLD_PREFIX/conf.d/*.conf" in job.nginx.scaffold
    # the engine checks the account rule and the host's other nginx servers there (`nginx -T` from test_command)
    assert (job.nginx_user, job.nginx.dump_command) == ("www-data", "nginx -T")


# --- bootstrap ------------------------------------------------------------------------------

def test_bootstrap_script_and_files(inv: inventory.Inventory) -> None:
    env = templates.environment(inv.root)
    full = bootstrap.build(inv, "web2", env)
    assert subprocess.run(["sh", "-n"], input=full.script, text=True).returncode == 0
    steps = ["apt-get install -y -qq --no-install-recommends nginx uwsgi-core uwsgi-plugin-python3",
             "mkdir -p -- /srv/two/vassals /srv/two/nginx /srv/two/run /srv/two/log", "chmod -- 700 /srv/two/state",
             "mv -f -- /srv/two/.emperor.ini.hostctl-tmp-bootstrap /srv/two/emperor.ini",
             "mv -f -- /srv/two/systemd/.hostctl-emperor.service.hostctl-tmp-bootstrap /srv/two/systemd/hostctl-emperor.service",
             "systemctl enable --now hostctl-emperor",
             "rm -f /etc/nginx/sites-enabled/default",  # its default server would clash with the include's
             "nginx -t -q", "systemctl reload nginx"]
    positions = [full.script.find(step) for step in steps]
    assert -1 not in positions and positions == sorted(positions), list(zip(steps, positions))
    assert sorted(full.files) == ["/srv/two/emperor.ini", "/srv/two/logrotate.conf", "/srv/two/nginx-include.conf",
                                  "/srv/two/systemd/hostctl-emperor.service", "/srv/two/systemd/hostctl-logrotate.service",
                                  "/srv/two/systemd/hostctl-logrotate.timer", "/srv/two/systemd/hostctl-restore.service"]
    assert ("ExecStart=/usr/bin/python3 /srv/two/state/engine/hostctl-engine.pyz restore --state-dir /srv/two/state"
            in full.files["/srv/two/systemd/hostctl-restore.service"])
    # Log retention on a server without hostctl: logrotate on a timer, over every customer's nginx logs.
    assert '"/srv/two/log/*/*.access.log" "/srv/two/log/*/*.error.log" {' in full.files["/srv/two/logrotate.conf"]
    assert ("ExecStart=/usr/sbin/logrotate -s /srv/two/state/logrotate.status /srv/two/logrotate.conf\n"
            in full.files["/srv/two/systemd/hostctl-logrotate.service"])
    assert "OnUnitActiveSec=60\n" in full.files["/srv/two/systemd/hostctl-logrotate.timer"]
    assert full.script.index("systemctl enable --now hostctl-logrotate.timer") > full.script.index("mv -f -- /srv/two/.logrotate.conf")
    assert "emperor = /srv/two/vassals" in full.files["/srv/two/emperor.ini"]
    assert "ExecStart=/usr/bin/uwsgi --ini /srv/two/emperor.ini" in full.files["/srv/two/systemd/hostctl-emperor.service"]
    assert "include /srv/two/nginx/*.conf;" in full.files["/srv/two/nginx-include.conf"]
    assert sorted(_members(full.payload)) == [f"srv/two/state/.hostctl-bootstrap/{n}" for n in
                                               ("bootstrap.sh", "emperor.ini", "hostctl-emperor.service", "hostctl-engine.pyz",
                                                "hostctl-logrotate.service", "hostctl-logrotate.timer", "hostctl-restore.service",
                                                "logrotate.conf", "nginx-hostctl.conf")]
    files_only = bootstrap.build(inv, "web2", env, packages=False, services=False)
    assert "apt-get" not in files_only.script and "systemctl" not in files_only.script
    assert files_only.files == full.files


def test_the_digest_of_a_host_in_sync_is_known_without_asking(tmp_path: Path) -> None:
    """``read_command`` run by a real shell on files laid out as a deploy leaves them hashes to ``expected_digest``."""
    base = tmp_path / "host"
    settings = HOSTS.replace("/srv/one", str(base))
    root = write_inventory(tmp_path / "inv", settings, {"acme.yaml": customer("acme.example", on_demand=True),
                                                         "globex.yaml": customer("globex.example")})
    loaded = inventory.load(root)
    view, identity, env, desired = _host(loaded, "web1")
    state = remote.expected(desired)
    assert remote.parse_state(remote.listing(state), "web1") == state
    for path, rendered in desired.items():
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(rendered.content)
        Path(path).chmod(rendered.mode)
    (base / "state").mkdir()
    (base / "state" / "manifest.json").write_text(state.manifest.to_json())
    run = lambda command: subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=True).stdout  # noqa: E731
    assert run(remote.read_command(view.settings)) == remote.listing(state)
    assert run(remote.digest_command(view.settings))[:64] == remote.expected_digest(desired)
    # a hand edit, a foreign file or a wrong mode changes the digest
    for spoil in (lambda: Path(base / "nginx" / "acme_web.conf").write_text("edited"),
                  lambda: Path(base / "vassals" / "stray.ini").write_text("x"),
                  lambda: Path(base / "vassals" / "globex_web.ini").chmod(0o644)):
        spoil()
        assert run(remote.digest_command(view.settings))[:64] != remote.expected_digest(desired)


def test_deploy_cache_is_keyed_by_the_inventorys_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hostctl.targets import deploycache

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    root = write_inventory(tmp_path / "inv", HOSTS, {"acme.yaml": customer("acme.example")})
    first = deploycache.fingerprint(str(root))
    assert deploycache.fingerprint(str(root)) == first
    assert deploycache.expected_digests(str(root), first) == {}
    deploycache.remember(str(root), first, {"web1": "listing one"})
    deploycache.remember(str(root), first, {"web2": "listing two"})
    assert deploycache.expected_digests(str(root), first) == {"web1": sha256("listing one"), "web2": sha256("listing two")}
    # the listing itself comes back only for the digest it has (content-addressed)
    assert deploycache.listing(str(root), "web1", sha256("listing one")) == "listing one"
    assert deploycache.listing(str(root), "web1", sha256("listing two")) is None
    assert deploycache.listing(str(root), "web3", sha256("listing one")) is None
    (root / "customers" / "acme.yaml").write_text(customer("acme.example", processes=3))
    second = deploycache.fingerprint(str(root))
    assert second != first and deploycache.expected_digests(str(root), second) == {}
    (root / "templates").mkdir()
    (root / "templates" / "server.conf.j2").write_text("x")
    assert deploycache.fingerprint(str(root)) not in (first, second)


def test_cli_deploy_and_bootstrap_messages(inv: inventory.Inventory, tmp_path: Path) -> None:
    """No SSH is needed to refuse: an inventory without hosts, an unknown host, and `bootstrap --print`."""
    from click.testing import CliRunner

    from hostctl.cli.main import cli

    runner = CliRunner()
    local = write_inventory(tmp_path / "local", "emperor_dir: vassals\n", {"acme.yaml": customer("acme.example")})
    result = runner.invoke(cli, ["-i", str(local), "deploy"])
    assert result.exit_code == 1
    assert "Error: hostctl.yaml has no 'hosts:'; this inventory is applied locally with `hostctl apply`." in result.output
    result = runner.invoke(cli, ["-i", str(inv.root), "deploy", "--host", "web9"])
    assert result.exit_code == 1 and "Error: unknown host 'web9'; hosts in hostctl.yaml: web1, web2." in result.output
    result = runner.invoke(cli, ["-i", str(inv.root), "plan"])
    assert result.exit_code == 1 and "use `hostctl deploy`" in result.output
    result = runner.invoke(cli, ["-i", str(inv.root), "bootstrap", "--host", "web2", "--print", "--files-only"])
    assert result.exit_code == 0 and result.output.startswith("#!/bin/sh") and "apt-get" not in result.output


def test_host_fingerprints_cover_only_that_hosts_customers(tmp_path: Path) -> None:
    from hostctl.targets import deploycache

    root = write_inventory(tmp_path / "inv", HOSTS, {"acme.yaml": customer("acme.example"),
                                                       "globex.yaml": customer("globex.example", "web2")})
    before = deploycache.inputs(str(root))
    assert set(before.customers) == {"customers/acme.yaml", "customers/globex.yaml"}
    (root / "customers" / "globex.yaml").write_text(customer("globex.example", "web2", processes=4))
    after = deploycache.inputs(str(root))
    assert after.fingerprint != before.fingerprint
    assert after.for_host(["customers/acme.yaml"]) == before.for_host(["customers/acme.yaml"])
    assert after.for_host(["customers/globex.yaml"]) != before.for_host(["customers/globex.yaml"])
    assert before.for_host([]) != before.for_host(["customers/acme.yaml"])  # a customer leaving a host counts
    (root / "hostctl.yaml").write_text(HOSTS + "defaults: {processes: 3}\n")  # shared: every host
    assert deploycache.inputs(str(root)).for_host(["customers/acme.yaml"]) != after.for_host(["customers/acme.yaml"])
