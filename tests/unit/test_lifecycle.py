"""An app's lifecycle options (lifecycle.py) and their validation: pure, from data."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings, strategies as st

from hostctl.engine import appagent
from hostctl.errors import InventoryError
from hostctl.inventory import loader as inventory, values
from hostctl.inventory.schema import App
from hostctl.render import lifecycle, readback, templates
from hostctl.render.files import render
from hostctl.render.identity import Identity

CASES = Path(__file__).parent / "render"


def kvlist(value: str) -> dict[str, str]:
    """uWSGI's ``uwsgi_kvlist_parse`` (core/utils.c, 2.0.21): split on unescaped ',', then at the first '='."""
    items, buf, escaped = [], [], False
    for ch in value:
        if ch == "," and not escaped:
            items.append("".join(buf))
            buf = []
        elif ch == "\\" and not escaped:
            escaped = True
        else:
            buf.append(ch)
            escaped = False
    if buf:
        items.append("".join(buf))
    out = {}
    for item in items:
        key, sep, rest = item.partition("=")
        if sep:
            out[key] = rest
    return out


def app(**extra) -> App:
    return App(domains=["a.example"], wsgi="app:application", **extra)


@pytest.mark.parametrize("schedule, fields", [
    ("* * * * *", "-1 -1 -1 -1 -1"), ("*/15 * * * *", "-15 -1 -1 -1 -1"), ("30 2 * * 0", "30 2 -1 -1 0"),
    ("0 */6 1 1 6", "0 -6 1 1 6"),
])
def test_cron_schedules_become_uwsgi_fields(schedule: str, fields: str) -> None:
    assert values.cron_schedule(schedule) == schedule
    assert lifecycle.cron_fields(schedule) == fields


@pytest.mark.parametrize("schedule", ["* * * *", "1,2 * * * *", "1-5 * * * *", "60 * * * *", "*/0 * * * *",
                                      "* * 0 * *", "*  * * * *", "@daily", "* * * * 7", "* * * * * *"])
def test_schedules_uwsgi_cannot_run_are_refused(schedule: str) -> None:
    with pytest.raises(ValueError):
        values.cron_schedule(schedule)


@pytest.mark.parametrize("command", ["", "   ", "a\nb", "a\rb", "x %(y)", "trailing ", "x" * 5000])
def test_commands_that_cannot_be_one_ini_value_are_refused(command: str) -> None:
    with pytest.raises(ValueError):
        values.command(command)


def test_a_released_app_runs_through_current_and_chain_reloads() -> None:
    lines = dict(lifecycle.vassal_lines(app(root="/srv/a/web")))
    assert lines["chdir"] == lines["python-path"] == "/srv/a/web/current"
    assert lines["virtualenv"] == "/srv/a/web/current/.venv"
    assert lines["hook-pre-app"] == "chdir:/srv/a/web/current"
    assert lines["lazy-apps"] == "true"
    assert lines["touch-chain-reload"] == "/srv/a/web/reload.touch"
    assert lifecycle.vassal_lines(app()) == ()  # no directory, nothing to add
    assert dict(lifecycle.vassal_lines(app(chdir="/srv/b"))) == {"touch-reload": "/srv/b/reload.touch"}


def test_root_excludes_chdir_and_virtualenv_and_release_needs_root() -> None:
    with pytest.raises(ValueError, match="remove 'chdir'"):
        app(root="/srv/a", chdir="/srv/a/x")
    with pytest.raises(ValueError, match="needs 'root'"):
        app(release={"build": ["true"]})


_command = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x2FF, blacklist_characters="\x7f"), min_size=1,
                   max_size=80).filter(lambda c: c.strip() and c == c.rstrip() and "%(" not in c)


@settings(max_examples=200, deadline=None)
@given(worker=_command, job=_command)
def test_any_valid_command_reads_back_exactly_as_one_line(worker: str, job: str) -> None:
    """Through the template, uWSGI's ini expansion and its key=value list parser, a command is itself."""
    cfg = app(chdir="/srv/a", workers={"w": worker}, cron=[{"schedule": "*/5 * * * *", "command": job}])
    env = templates.environment(Path("/nonexistent"))
    text = templates.render(templates.get(env, "vassal.ini.j2"), **_context(cfg))
    directives = readback.parse_ini(text)
    daemons = readback.values_of(directives, "attach-daemon2")
    crons = readback.values_of(directives, "unique-cron")
    assert len(daemons) == 1 and len(crons) == 1
    assert all(d.expanded is None for d in directives)
    prefix = lifecycle.shell_prefix(cfg)
    assert kvlist(daemons[0])["cmd"] == prefix + worker
    assert kvlist(daemons[0])["touch"] == "/srv/a/reload.touch"
    assert crons[0] == f"-5 -1 -1 -1 -1 {prefix}{job}"


def _context(cfg: App) -> dict:
    from hostctl.render.escape import INI_PLACEHOLDERS
    from hostctl.render.layout import app_paths
    from hostctl.inventory.schema import Settings

    settings = Settings(emperor_dir="/v", nginx_dir="/n", run_dir="/r", log_dir="/l", state_dir="/s")
    return dict(settings=settings, customer=type("C", (), {"name": "c"}), app=type("A", (), {"name": "web"}), cfg=cfg,
                paths=app_paths(settings, "c", "web"), user="hc-c", group="hc-c", placeholders=INI_PLACEHOLDERS,
                log_maxsize=1, wsgi_file=None, cgroup_lines=(), lifecycle_lines=lifecycle.vassal_lines(cfg))


def test_the_apps_golden_case_reads_back_as_intended(tmp_path: Path) -> None:
    root = tmp_path / "inv"
    shutil.copytree(CASES / "apps", root, ignore=shutil.ignore_patterns("expected"))
    inv = inventory.load(root)
    files = render(inv, Identity(per_customer=True), templates.environment(inv.root))
    for spec in inv.apps():
        from hostctl.render.layout import app_paths

        paths = app_paths(inv.settings, spec.customer, spec.name)
        want = readback.intended(spec.config, paths, inv.customers[0].user)
        assert readback.vassal_problems(files[paths.vassal].content, want) == []


def test_a_bad_worker_or_schedule_names_file_line_and_field(tmp_path: Path) -> None:
    root = tmp_path / "inv"
    shutil.copytree(CASES / "apps", root, ignore=shutil.ignore_patterns("expected"))
    data = yaml.safe_load((root / "customers" / "shop.yaml").read_text())
    data["apps"]["web"]["cron"][0]["schedule"] = "1-5 * * * *"
    data["apps"]["web"]["workers"]["Bad Name"] = "x"
    (root / "customers" / "shop.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(InventoryError) as info:
        inventory.load(root)
    text = str(info.value)
    assert "customers/shop.yaml:12: apps.web.cron[0].schedule: '1-5 * * * *': the minute field '1-5'" in text
    assert "(uWSGI's cron has no lists or ranges)" in text
    assert "apps.web.workers.Bad Name: 'Bad Name' is not a valid worker name" in text


def test_the_agent_finds_the_customers_cgroups_in_the_mount_table(tmp_path: Path) -> None:
    mounts = (f"cgroup {tmp_path}/memory cgroup rw,nosuid,memory 0 0\n"
              f"cgroup {tmp_path}/cpu,cpuacct cgroup rw,cpu,cpuacct 0 0\n"
              f"cgroup2 {tmp_path}/unified cgroup2 rw 0 0\n")
    for d in ("memory", "cpu,cpuacct", "unified"):
        (tmp_path / d / "hostctl" / "acme").mkdir(parents=True)
        (tmp_path / d / "hostctl" / "acme" / "cgroup.procs").write_text("")
    spec = {"mode": "v1", "parent": "hostctl"}
    assert appagent.cgroup_procs(spec, "acme", mounts) == [f"{tmp_path}/memory/hostctl/acme/cgroup.procs",
                                                          f"{tmp_path}/cpu,cpuacct/hostctl/acme/cgroup.procs"]
    assert appagent.cgroup_procs({**spec, "mode": "v2"}, "acme", mounts) == [f"{tmp_path}/unified/hostctl/acme/cgroup.procs"]
    assert appagent.cgroup_procs({**spec, "mode": "off"}, "acme", mounts) == []
    with pytest.raises(appagent.AgentError, match="no cgroup"):
        appagent.cgroup_procs({**spec, "required": True}, "other", mounts)


def test_the_commands_environment_has_nothing_of_roots() -> None:
    user = {"name": "hc-a", "uid": 1000, "gid": 1000, "home": "/nonexistent"}
    env = appagent.environment({"X": "1", "PATH": "/custom"}, user, "/srv/a", "/srv/a/.venv")
    assert env == {"PATH": "/custom", "LANG": "C.UTF-8", "HOME": "/srv/a", "USER": "hc-a", "LOGNAME": "hc-a",
                   "VIRTUAL_ENV": "/srv/a/.venv", "X": "1"}


def test_status_shows_each_worker_and_cron_job_from_the_vassals_stats() -> None:
    from hostctl.status import rows as status
    from hostctl.inventory.spec import AppSpec
    from hostctl.status.collect import Observed

    cfg = app(chdir="/srv/a", workers={"celery": "celery worker", "rq": "rq worker"},
              cron=[{"schedule": "*/15 * * * *", "command": "python manage.py clearsessions"}])
    spec = AppSpec("acme", "web", cfg)
    vstats = {"workers": [], "daemons": [{"cmd": "x", "pid": 4242, "respawns": 0}, {"cmd": "y", "pid": 0, "respawns": 0}],
              "crons": [{"command": "z", "pid": -1, "started_at": 1796020000}]}
    observed = Observed(now=0.0, emperor={"vassals": [], "blacklist": []}, vassals={"acme_web": vstats})
    row = status.row(spec, observed)
    assert row.background == {"workers": {"celery": 4242, "rq": None},
                              "cron": [{"schedule": "*/15 * * * *", "pid": None, "started_at": 1796020000}]}
    assert status.row(AppSpec("acme", "plain", app()), observed).background == {}


def test_release_sources_a_directory_or_a_git_ref(tmp_path: Path) -> None:
    import io
    import subprocess
    import tarfile

    from hostctl.targets import apps

    code = tmp_path / "code"
    (code / ".git").mkdir(parents=True)
    (code / "pkg" / "__pycache__").mkdir(parents=True)
    (code / "app.py").write_text("v1")
    (code / "pkg" / "__pycache__" / "x.pyc").write_text("")
    (code / ".venv").mkdir()
    assert apps.split_source("ssh://git@host/x.git") == ("ssh://git@host/x.git", None, True)
    assert apps.split_source("git@github.com:org/repo.git@v1.2") == ("git@github.com:org/repo.git", "v1.2", True)
    assert apps.split_source("https://git.example/shop.git@feature/x") == ("https://git.example/shop.git", "feature/x", True)
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    for version in ("one", "two"):
        (repo / "app.py").write_text(version)
        subprocess.run(git + ["add", "app.py"], check=True)
        subprocess.run(git + ["commit", "-qm", version], check=True)
    subprocess.run(git + ["tag", "first", "HEAD~1"], check=True)

    def names_and_app(payload: bytes) -> tuple[list[str], str]:
        with tarfile.open(fileobj=io.BytesIO(payload)) as tar:
            return sorted(tar.getnames()), tar.extractfile("app.py").read().decode()

    # a checkout with .git is released from its repository (HEAD), a plain directory as it is
    shutil.rmtree(code / ".git")
    payload, origin = apps.package(str(code))
    assert names_and_app(payload) == (["app.py", "pkg"], "v1") and origin.startswith("directory ")
    payload, origin = apps.package(f"{repo}@first")
    assert names_and_app(payload)[1] == "one" and origin.startswith(f"git {repo} first (")
    assert names_and_app(apps.package(str(repo))[0])[1] == "two"
    with pytest.raises(Exception, match="git archive nope"):
        apps.package(f"{repo}@nope")


def test_a_directory_is_packed_through_descriptors_links_as_links(tmp_path: Path) -> None:
    """Packing never follows a link (root packs what a customer may write): links stay links, modes and
    content are kept, excluded names go at any depth, and a FIFO is refused by name."""
    import io
    import os
    import tarfile

    from hostctl.errors import HostctlError
    from hostctl.targets import apps

    code = tmp_path / "code"
    (code / "pkg" / "__pycache__").mkdir(parents=True)
    (code / "pkg" / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(code / "pkg" / "run.sh", 0o755)
    (code / "app.py").write_text("v1")
    (code / "outside").symlink_to(tmp_path)  # packed as a link: its target's files are not
    (code / "pkg" / "app-link.py").symlink_to("../app.py")
    payload, _ = apps.package(str(code))
    with tarfile.open(fileobj=io.BytesIO(payload)) as tar:
        members = {m.name: m for m in tar.getmembers()}
        assert sorted(members) == ["app.py", "outside", "pkg", "pkg/app-link.py", "pkg/run.sh"]
        assert members["outside"].issym() and members["outside"].linkname == str(tmp_path)
        assert members["pkg/app-link.py"].linkname == "../app.py" and members["pkg"].isdir()
        assert members["pkg/run.sh"].mode == 0o755 and tar.extractfile("app.py").read() == b"v1"
    os.mkfifo(code / "pkg" / "pipe")
    with pytest.raises(HostctlError, match=r"pkg/pipe is not a file, directory or link"):
        apps.package(str(code))


def test_requests_for_a_multi_host_customer_use_that_hosts_paths_and_identity(tmp_path: Path) -> None:
    """Pure request building for a host (the remote path of run/restart/release, without SSH)."""
    from hostctl.targets import apps

    root = tmp_path / "inv"
    shutil.copytree(CASES / "apps", root, ignore=shutil.ignore_patterns("expected"))
    settings = yaml.safe_load((root / "hostctl.yaml").read_text())
    settings["hosts"] = {"web": {"address": "127.0.0.1", "emperor_dir": "/srv/v", "nginx_dir": "/srv/n", "run_dir": "/srv/r",
                                 "log_dir": "/srv/l", "state_dir": "/srv/s", "nginx": {"listen": "127.0.0.1:8081"}}}
    settings["default_host"] = "web"
    (root / "hostctl.yaml").write_text(yaml.safe_dump(settings))
    inv = inventory.load(root)
    customer = apps.customer_of(inv, "shop")
    web = apps.released_app(customer, None)
    assert apps.release_hosts(inv, customer, ()) == ["web"]
    req = apps.release_request(inv, customer, web, "web", "release", euid=1000)
    assert req["user"] == "hc-shop" and req["vassal"] == "/srv/v/shop_web.ini" and req["stats"] == "/srv/r/shop/web.stats"
    assert req["root"] == "/srv/shop/web" and req["hooks"]["before_switch"] == ["python manage.py migrate --noinput"]
    assert req["workdir"] == "/srv/shop/web/current" and req["venv"] == "/srv/shop/web/current/.venv"
    with pytest.raises(Exception, match="not placed on host 'db'"):
        apps.release_hosts(inv, customer, ("db",))


def test_root_reads_current_with_readlink_only_and_refuses_odd_roots(tmp_path: Path) -> None:
    import os

    root = tmp_path / "app"
    (root / "releases" / "20261130T080000Z").mkdir(parents=True)
    os.symlink("releases/20261130T080000Z", root / "current")
    assert appagent.read_current(str(root)) == "20261130T080000Z"
    (root / "current").unlink()
    os.symlink("/etc", root / "current")  # planted by the customer: not a release, never followed
    assert appagent.read_current(str(root)) is None
    link = tmp_path / "link"
    os.symlink(root, link)
    assert appagent.read_current(str(link)) is None and appagent.list_releases(str(link)) == []  # O_NOFOLLOW
    if os.geteuid() == 0:
        with pytest.raises(appagent.AgentError, match="must be a directory owned by root"):
            appagent.check_parents(str(link / "x"))
        os.chown(tmp_path, 1, 1)
        with pytest.raises(appagent.AgentError, match="owned by root"):
            appagent.check_parents(str(tmp_path / "app"))
        user = {"name": "nobody", "uid": 65534, "gid": 65534, "home": "/"}
        os.chown(tmp_path, 0, 0)
        os.chown(root, 1, 1)  # a third account's (root's and the customer's are taken, see test_hostile_code)
        with pytest.raises(appagent.AgentError, match="belongs to uid 1, not to root or 'nobody'"):
            appagent.ensure_root(str(root), user, -1)


def test_the_fabric_release_task_is_the_release_command(tmp_path: Path) -> None:
    from invoke.exceptions import Exit

    from hostctl.fabfile import fabfile

    root = tmp_path / "inv"
    shutil.copytree(CASES / "apps", root, ignore=shutil.ignore_patterns("expected"))
    with pytest.raises(Exit) as info:
        fabfile.release.body(None, "nobody", source=str(tmp_path), inventory=str(root))
    assert "no customer 'nobody'" in str(info.value.message) and info.value.code == 1
    with pytest.raises(Exit) as info:
        fabfile.release.body(None, "shop", app="legacy", rollback="previous", inventory=str(root))
    assert "shop_legacy has no 'root:'" in str(info.value.message)
