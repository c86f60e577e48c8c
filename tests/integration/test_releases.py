"""Releases of real apps this project does not own: a Flask app and a Django project, built from a
requirements.txt into a fresh virtualenv by `hostctl release`, served by a real Emperor and nginx.

One customer (its own Unix user, its own cgroup v1 leaf) with two released apps. pip downloads from
PyPI into a cache shared by the test runs (HOSTCTL_TEST_PIP_CACHE, default /tmp/hostctl-test-pip-cache),
so a rerun builds from the cache.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest
import yaml

from tests.harness import PIP_CACHE, Sandbox, Server, require_cgroup_v1, wait_for
from tests.integration.test_app_life import OneCustomer
from tests.integration.test_limits import CONTROLLERS
from tests.sshd import hosts_for

pytestmark = pytest.mark.integration

FLASK_APP = '''import os
from flask import Flask

app = Flask(__name__)
VERSION = "{version}"


@app.route("/")
def index():
    return f"{{VERSION}} pid={{os.getpid()}} uid={{os.getuid()}}"


@app.route("/health")
def health():
    return "{health_body}", {health_status}
'''
BEAT = "while true; do echo \"$(id -u) $$ $(readlink -f .)\" >> ../../data/beat.log; sleep 1; done"
DJANGO_SETTINGS = '''
import os
DEBUG = False
ALLOWED_HOSTS = ["django.test"]
STATIC_ROOT = BASE_DIR / "static"
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ["DATABASE_PATH"]}}
INSTALLED_APPS += ["notes"]
LOGGING = {"version": 1, "handlers": {"stderr": {"class": "logging.StreamHandler"}},
           "root": {"handlers": ["stderr"], "level": "WARNING"}}
'''


class Releases(OneCustomer):
    def __init__(self) -> None:
        super().__init__("rel", "r")
        self.srv = self.box.path("srv")
        self.srv.mkdir()
        self.sources = self.box.path("sources")
        self.sources.mkdir()
        Path(PIP_CACHE).mkdir(mode=0o1777, exist_ok=True)
        os.chmod(PIP_CACHE, 0o1777)

    def root(self, app: str) -> Path:
        return self.srv / app

    def flask_source(self, name: str, version: str, health: int = 200, requirements: str = "flask\n",
                     extra: dict[str, str] | None = None) -> str:
        src = self.sources / name
        src.mkdir()
        (src / "app.py").write_text(FLASK_APP.format(version=version, health_status=health,
                                                     health_body="ok" if health == 200 else "broken"))
        (src / "requirements.txt").write_text(requirements)
        for rel, text in (extra or {}).items():
            (src / rel).write_text(text)
        return str(src)

    def release(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.box.hostctl("release", "rel", *args, check=check, timeout=900)

    def text(self, host: str, path: str = "/") -> tuple[int, str]:
        assert self.server is not None
        status, body = self.server.request(host, path, timeout=30)
        return status, body.decode(errors="replace")


@pytest.fixture(scope="module")
def rel() -> Iterator[Releases]:
    require_cgroup_v1()
    setup = Releases()
    try:
        django_root = setup.root("django")
        setup.box.write_customer("rel", {
            "user": setup.user,
            "limits": {"memory": "512M", "pids": 256},
            "apps": {
                "flask": {"domains": ["flask.test"], "wsgi": "app:app", "root": str(setup.root("flask")),
                          "env": {"PIP_CACHE_DIR": PIP_CACHE},
                          "probe": {"path": "/health", "status": 200, "timeout": 10},
                          "workers": {"beat": BEAT}, "release": {"keep": 3}},
                "django": {"domains": ["django.test"], "wsgi": "mysite.wsgi:application", "root": str(django_root),
                           "env": {"PIP_CACHE_DIR": PIP_CACHE, "DJANGO_SETTINGS_MODULE": "mysite.settings",
                                   "DATABASE_PATH": str(django_root / "data" / "db.sqlite3")},
                           "static": {"/static/": str(django_root / "current" / "static")},
                           "probe": {"path": "/admin/login/", "status": 200, "timeout": 20},
                           "release": {"build": ["python manage.py collectstatic --noinput"],
                                       "before_switch": ["python manage.py migrate --noinput"]}},
            },
        })
        setup.box.hostctl("apply", "--create-users")
        setup.server = Server(setup.box)
        yield setup
    finally:
        setup.teardown()


def _loop(rel: Releases, host: str, action) -> list[tuple[int, str]]:
    """(status, body) of every request of a loop that runs while ``action()`` does."""
    answers: list[tuple[int, str]] = []
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            answers.append(rel.text(host))

    thread = threading.Thread(target=loop)
    thread.start()
    try:
        action()
        time.sleep(0.5)
    finally:
        stop.set()
        thread.join(timeout=60)
    return answers


def test_first_flask_release_is_served_as_the_customer(rel: Releases) -> None:
    out = rel.release("--app", "flask", "--source", rel.flask_source("f1", "v1"))
    assert "is live (previous: none)" in out.stdout, out.stderr
    assert "building from requirements.txt" in out.stderr
    status, body = rel.text("flask.test")
    assert status == 200 and body.startswith("v1 ") and f"uid={rel.uid}" in body
    root = rel.root("flask")
    current = os.readlink(root / "current")
    assert current.startswith("releases/") and (root / current / "app.py").is_file()
    st = os.stat(root)  # root's: the app (the customer) cannot rewrite its code (tests/integration/test_hostile_code.py)
    assert st.st_uid == 0 and st.st_mode & 0o7777 == 0o751
    for path in (root / current / "app.py", root / current / ".venv" / "bin" / "python"):
        assert os.stat(path, follow_symlinks=False).st_uid == 0, path
    assert os.stat(root / "data").st_uid == rel.uid


def test_second_release_goes_live_without_a_failed_request(rel: Releases) -> None:
    source = rel.flask_source("f2", "v2")
    out: list[subprocess.CompletedProcess] = []
    answers = _loop(rel, "flask.test", lambda: out.append(rel.release("--app", "flask", "--source", source)))
    assert "virtualenv" in out[0].stderr and "reused (requirements.txt unchanged)" in out[0].stderr
    failed = [a for a in answers if a[0] != 200]
    versions = [body.split()[0] for _, body in answers if body]
    print(f"second release: {len(answers)} requests during the switch, {len(failed)} failed")
    assert not failed, f"{len(failed)} of {len(answers)} requests failed: {failed[:3]}"
    assert "v1" in versions and versions[-1] == "v2", versions[-5:]
    assert rel.text("flask.test")[1].startswith("v2 ")


def test_a_failing_hook_leaves_the_running_release_untouched(rel: Releases) -> None:
    live = os.readlink(rel.root("flask") / "current")
    customer = rel.box.inventory / "customers" / "rel.yaml"
    saved = customer.read_text()
    data = yaml.safe_load(saved)
    data["apps"]["flask"]["release"]["before_switch"] = ["echo checking; exit 7"]
    customer.write_text(yaml.safe_dump(data, sort_keys=False))
    try:
        out = rel.release("--app", "flask", "--source", rel.flask_source("f3", "v3"), check=False)
    finally:
        customer.write_text(saved)
    assert out.returncode == 1
    assert "before_switch hook 'echo checking; exit 7' exited 7" in out.stderr
    assert "was not switched to" in out.stdout and f"{live.split('/')[1]} stays live" in out.stdout
    assert os.readlink(rel.root("flask") / "current") == live
    assert rel.text("flask.test")[1].startswith("v2 ")
    assert len(os.listdir(rel.root("flask") / "releases")) == 2, "the failed release is removed"


def test_a_release_that_fails_its_health_check_is_switched_back(rel: Releases) -> None:
    live = os.readlink(rel.root("flask") / "current")
    out = rel.release("--app", "flask", "--source", rel.flask_source("f4", "v4", health=500), check=False)
    assert out.returncode == 1, out.stdout
    assert "health check GET /health (Host: flask.test) answered HTTP 500, expected HTTP 200" in out.stderr
    assert "was switched back" in out.stdout
    assert os.readlink(rel.root("flask") / "current") == live
    wait_for(lambda: rel.text("flask.test")[1].startswith("v2 ") and all(
        rel.text("flask.test")[1].startswith("v2 ") for _ in range(6)), timeout=60, what="v2 on every worker")


def test_the_worker_runs_as_the_customer_in_its_cgroup_and_restarts_with_a_release(rel: Releases) -> None:
    beat = rel.root("flask") / "data" / "beat.log"

    def last() -> list[str] | None:
        lines = beat.read_text().splitlines() if beat.exists() else []
        return lines[-1].split() if lines else None

    fields = wait_for(last, timeout=30, what="the worker's output")
    pid = int(fields[1])
    assert fields[0] == str(rel.uid)
    assert fields[2] == str(rel.root("flask") / os.readlink(rel.root("flask") / "current"))
    for controller in CONTROLLERS:
        assert f":{controller}:/{rel.parent}/rel\n" in Path(f"/proc/{pid}/cgroup").read_text()
    rel.release("--app", "flask", "--rollback")
    fields = wait_for(lambda: (f := last()) and int(f[1]) != pid and f, timeout=60, what="the worker to restart")
    assert fields[2] == str(rel.root("flask") / os.readlink(rel.root("flask") / "current"))


def test_list_and_rollback(rel: Releases) -> None:
    listed = rel.release("--app", "flask", "--list").stdout.splitlines()
    assert len(listed) == 2 and listed[0].endswith("(live)"), listed  # the rollback above made the first live
    assert rel.text("flask.test")[1].startswith("v1 ")
    second = listed[1].split(": ")[1]
    out = rel.release("--app", "flask", "--rollback", second)
    assert f"{second} is live" in out.stdout
    assert rel.text("flask.test")[1].startswith("v2 ")
    bad = rel.release("--app", "flask", "--rollback", "20000101T000000Z", check=False)
    assert bad.returncode == 1 and "there is no release '20000101T000000Z'" in bad.stdout + bad.stderr


def test_old_releases_are_pruned_and_unused_virtualenvs_removed(rel: Releases) -> None:
    for n in range(2):
        rel.release("--app", "flask", "--source", rel.flask_source(f"p{n}", f"p{n}", requirements="flask\nitsdangerous\n"))
    releases = sorted(os.listdir(rel.root("flask") / "releases"))
    assert len(releases) == 3, releases  # keep: 3
    used = {os.path.basename(os.readlink(rel.root("flask") / "releases" / r / ".venv")) for r in releases}
    assert len(used) == 2 and set(os.listdir(rel.root("flask") / "venvs")) == used


def test_links_the_customer_plants_in_its_root_are_never_followed_by_root(rel: Releases) -> None:
    """The customer cannot plant in releases/ or venvs/ (root's); links left there by an older layout (where
    the customer owned them; made by root here) are skipped by listing and unlinked by pruning, never followed."""
    secret = Path(f"/root/hostctl-test-{secrets.token_hex(3)}")
    secret.mkdir(mode=0o700)
    try:
        (secret / "keep").write_text("root's")
        root = rel.root("flask")
        for planted in (root / "releases" / "19990101T000000Z", root / "venvs" / "0000000000000000"):
            refused = subprocess.run(["runuser", "-u", rel.user, "--", "ln", "-s", str(secret), str(planted)],
                                     capture_output=True, text=True)
            assert refused.returncode != 0 and "Permission denied" in refused.stderr, refused
            os.symlink(secret, planted)
        listed = rel.release("--app", "flask", "--list").stdout
        assert "19990101T000000Z" not in listed
        rel.release("--app", "flask", "--source", rel.flask_source("after-links", "p9", requirements="flask\nitsdangerous\n"))
        assert (secret / "keep").read_text() == "root's"
        assert not os.path.lexists(root / "releases" / "19990101T000000Z")
        assert not os.path.lexists(root / "venvs" / "0000000000000000")
    finally:
        shutil.rmtree(secret, ignore_errors=True)


def _django_project(rel: Releases, tool: Path) -> str:
    """`django-admin startproject` + an app with a model and its migration, made with the virtualenv ``tool``
    (the session's Django one; the release builds its own from the requirements written here)."""
    src = rel.sources / "django1"
    env = {**os.environ, "PIP_CACHE_DIR": PIP_CACHE}
    src.mkdir()
    subprocess.run([str(tool / "bin" / "django-admin"), "startproject", "mysite", "."], check=True, cwd=src)
    subprocess.run([str(tool / "bin" / "python"), "manage.py", "startapp", "notes"], check=True, cwd=src)
    (src / "notes" / "models.py").write_text(
        "from django.db import models\n\n\nclass Note(models.Model):\n    text = models.CharField(max_length=100)\n")
    with open(src / "mysite" / "settings.py", "a") as fh:
        fh.write(DJANGO_SETTINGS)
    subprocess.run([str(tool / "bin" / "python"), "manage.py", "makemigrations", "notes"], check=True, cwd=src,
                   env={**env, "DATABASE_PATH": str(rel.box.path("scratch.sqlite3"))})
    version = subprocess.run([str(tool / "bin" / "python"), "-c", "import django; print(django.__version__)"],
                             check=True, capture_output=True, text=True).stdout.strip()
    (src / "requirements.txt").write_text(f"django=={version}\n")
    return str(src)


def test_django_release_migrates_collects_static_and_serves_with_debug_off(rel: Releases, django_venv: Path) -> None:
    out = rel.release("--app", "django", "--source", _django_project(rel, django_venv))
    assert "is live" in out.stdout, out.stderr
    assert "Applying notes.0001_initial" in out.stderr
    root = rel.root("django")
    status, body = rel.text("django.test", "/admin/login/")
    assert status == 200 and "csrfmiddlewaretoken" in body
    assert rel.text("django.test", "/no-such-page/")[0] == 404  # DEBUG off: no debug page
    css = rel.text("django.test", "/static/admin/css/base.css")
    assert css[0] == 200 and "DJANGO" in css[1].upper()  # collected by the build hook, served by nginx
    db = root / "data" / "db.sqlite3"
    assert os.stat(db).st_uid == rel.uid


def test_run_manage_py_migrate_as_the_customer_in_its_cgroup(rel: Releases) -> None:
    proc = rel.box.hostctl("run", "rel", "--app", "django", "--", "sh", "-c",
                           "python manage.py migrate --noinput && id -u && cat /proc/self/cgroup")
    assert proc.returncode == 0, proc.stderr
    assert "No migrations to apply." in proc.stdout
    lines = proc.stdout.splitlines()
    assert str(rel.uid) in lines
    for controller in CONTROLLERS:
        assert any(line.endswith(f":{controller}:/{rel.parent}/rel") for line in lines), controller
    shell = rel.box.hostctl("run", "rel", "--app", "django", "--", "sh", "-c", "readlink -f . ; echo $VIRTUAL_ENV")
    here, venv = shell.stdout.split()
    assert here.startswith(str(rel.root("django") / "releases")) and venv == str(rel.root("django") / "current" / ".venv")


def test_release_rollback_and_run_over_ssh(rel: Releases) -> None:
    """The same agent on a server reached over SSH (a loopback sshd whose 'server' is this sandbox)."""
    remote = Sandbox()  # the operator's multi-host inventory
    try:
        with hosts_for(remote) as ssh:
            host = ssh.start("web")
            settings = yaml.safe_load((remote.inventory / "hostctl.yaml").read_text())
            paths = {key: str(rel.box.path(d)) for key, d in (("emperor_dir", "vassals"), ("nginx_dir", "nginx"),
                                                             ("run_dir", "run"), ("log_dir", "log"), ("state_dir", "state"))}
            settings["hosts"] = {"web": host.settings(**paths, nginx={"listen": f"127.0.0.1:{rel.box.port}"})}
            settings["isolation"] = {"users": "auto"}
            settings["cgroup"] = {"mode": "v1", "parent": rel.parent}
            remote.write_settings(settings)
            customer = yaml.safe_load((rel.box.inventory / "customers" / "rel.yaml").read_text())
            remote.write_customer("rel", {**customer, "host": "web"})

            def hostctl(*args: str, check: bool = True) -> subprocess.CompletedProcess:
                return remote.hostctl(*args, check=check, timeout=900)

            live = os.readlink(rel.root("flask") / "current")
            out = hostctl("release", "rel", "--app", "flask", "--source", rel.flask_source("ssh1", "over-ssh"))
            assert "rel_flask on web: " in out.stdout and "is live" in out.stdout, out.stderr
            assert "[web] hostctl: virtualenv venvs/" in out.stderr  # the server's output, streamed with its name
            assert rel.text("flask.test")[1].startswith("over-ssh ")
            listed = hostctl("release", "rel", "--app", "flask", "--list").stdout
            assert listed.splitlines()[-1].endswith("(live)") and "rel_flask on web: " in listed
            back = hostctl("release", "rel", "--app", "flask", "--rollback", "--host", "web")
            assert f"{live.split('/')[1]} is live" in back.stdout
            assert not rel.text("flask.test")[1].startswith("over-ssh ")
            pids = {rel.text("flask.test")[1].split()[1] for _ in range(6)}
            assert "reloading gracefully" in hostctl("restart", "rel", "--app", "flask").stdout
            wait_for(lambda: not {rel.text("flask.test")[1].split()[1] for _ in range(6)} & pids, timeout=60,
                     what="new workers after a restart over SSH")
            ran = hostctl("run", "rel", "--app", "flask", "--", "sh", "-c", "id -u; cat /proc/self/cgroup; exit 5", check=False)
            assert ran.returncode == 5, ran.stderr
            assert ran.stdout.splitlines()[0] == str(rel.uid)
            assert f":memory:/{rel.parent}/rel" in ran.stdout
    finally:
        remote.cleanup()
