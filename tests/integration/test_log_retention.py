"""Log retention against a real Emperor, nginx and logrotate: write far past logs.max_size through
the app and check what is kept (which files, how many bytes).

The app's uWSGI log is rotated by its own master (log-maxsize, one backup); nginx's per-app logs
by logrotate, which `hostctl serve` runs every logs.check_interval seconds.
"""

from __future__ import annotations

import os
import pwd
import secrets
import subprocess
import time
from pathlib import Path

import pytest

from tests.harness import Sandbox, wait_for

pytestmark = pytest.mark.integration

MAX_SIZE = 16 << 10
KEEP = 2
PATH_LEN = 1500  # each request adds about this much to the app's log and to nginx's access log
REQUESTS = 220  # about 20 x MAX_SIZE into each log


def _files(directory: Path, prefix: str) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in directory.iterdir() if p.name == prefix or p.name.startswith(prefix + ".")}


def _write_past_the_limit(server, host: str) -> int:
    """Requests with long paths, paced (~30 KB/s) so that each rotation check sees a bounded step."""
    written = 0
    for i in range(REQUESTS):
        path = f"/{i:05d}/" + "x" * PATH_LEN
        status, _ = server.request(host, path)
        assert status == 200
        written += len(path)
        time.sleep(0.05)
    return written


@pytest.mark.parametrize("users", ["invoker", "per-customer"])
def test_app_and_nginx_logs_keep_a_bounded_number_of_files(make_server, users: str) -> None:
    """per-customer (as root): the app runs as its own Unix user and writes its log as that user; uWSGI
    rotates it as that user, logrotate (root) rotates nginx's logs in root's directory only."""
    if users == "per-customer" and os.geteuid() != 0:
        pytest.skip("per-customer users need root")
    box = Sandbox({"logs": {"max_size": f"{MAX_SIZE // 1024}K", "keep": KEEP, "check_interval": 1},
                   "isolation": {"users": users}})
    user = f"hct-l{secrets.token_hex(3)}"
    server = None
    try:
        customer = {"apps": {"web": box.echo_app(["acme.example"])}}
        if users == "per-customer":
            customer["user"] = user
        box.write_customer("acme", customer)
        server = make_server(box)
        box.hostctl("apply", "--create-users")
        server.wait_json("acme.example")
        written = _write_past_the_limit(server, "acme.example")
        logs = box.path("log") / "acme"
        app_logs = logs / "uwsgi"  # the customer's own directory (README: Security model)

        # The last overflow is rotated by the next check (uWSGI: about a second; logrotate: check_interval).
        # (between its rename and its reopen, uWSGI's live log does not exist for a moment)
        wait_for(lambda: _files(app_logs, "web.log").get("web.log", MAX_SIZE + 1) <= MAX_SIZE, timeout=30,
                 what="uWSGI to rotate its log")
        wait_for(lambda: _files(logs, "web.access.log").get("web.access.log", 0) <= MAX_SIZE, timeout=30,
                 what="logrotate to rotate nginx's access log")
        app_log = _files(app_logs, "web.log")
        access = _files(logs, "web.access.log")
        print(f"written to each log: {written} bytes; kept: app {app_log}, nginx {access}")

        # uWSGI: the live log and exactly one backup, never <log>.<timestamp> files that nobody deletes.
        assert set(app_log) == {"web.log", "web.log.1"}, app_log
        # Each file holds at most max_size plus what arrived between two checks (load-dependent), so the
        # sizes are checked against what was written, not against a timing-dependent figure.
        assert sum(app_log.values()) < written / 4
        # nginx: the live log and `keep` rotated ones; older ones were deleted.
        assert set(access) == {"web.access.log"} | {f"web.access.log.{n}" for n in range(1, KEEP + 1)}, access
        assert sum(access.values()) < written / 2
        # The app and nginx still log into the live files after rotating.
        marker = "/after-rotation-" + os.urandom(4).hex()
        server.request("acme.example", marker)
        wait_for(lambda: marker in (app_logs / "web.log").read_text(errors="replace"), timeout=10, what="the app's line")
        wait_for(lambda: marker in (logs / "web.access.log").read_text(errors="replace"), timeout=10, what="nginx's line")
        if users == "per-customer":
            uid = pwd.getpwnam(user).pw_uid
            # the customer's own process rotated its log; root's logrotate only touched root's directory
            assert {(app_logs / n).stat().st_uid for n in app_log} == {uid}
            assert {(logs / n).stat().st_uid for n in access} == {0} and logs.stat().st_uid == 0
            rotated = box.hostctl("rotate-logs", check=False)
            assert rotated.returncode == 0 and rotated.stderr == "", rotated.stderr  # no directory refused
    finally:
        if server is not None:
            server.stop()  # before userdel: a user with running processes is not removed
        subprocess.run(["userdel", user], capture_output=True)
        box.cleanup()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: the danger is root rotating in a customer's directory")
def test_rotate_logs_never_touches_a_directory_a_customer_can_write(sandbox: Sandbox) -> None:
    """A customer-owned log directory with a planted symlink where nginx's log would be: root's
    logrotate would copy and truncate the symlink's target. `rotate-logs` refuses the directory
    (exit 1, naming it) and the canary is untouched; a root-owned neighbour is still rotated."""
    sandbox.write_settings({**_settings(sandbox), "logs": {"max_size": "1K", "keep": 1}})
    log = sandbox.path("log")
    hostile, fine = log / "hostile", log / "fine"
    for d in (hostile, fine):
        d.mkdir(parents=True)
    os.chown(hostile, 65534, 65534)  # nobody: stands for a customer's user
    canary = sandbox.path("canary")
    canary.write_text("root's file\n" * 1000)
    os.chmod(canary, 0o600)
    (hostile / "web.access.log").symlink_to(canary)
    (fine / "web.access.log").write_text("x" * 5000)
    proc = sandbox.hostctl("rotate-logs", check=False)
    assert proc.returncode == 1 and f"not rotating the nginx logs in {hostile}" in proc.stderr, proc.stderr
    assert canary.read_text() == "root's file\n" * 1000 and not (hostile / "web.access.log.1").exists()
    assert (fine / "web.access.log").stat().st_size == 0 and (fine / "web.access.log.1").stat().st_size == 5000


def _settings(box: Sandbox) -> dict:
    import yaml

    return yaml.safe_load((box.inventory / "hostctl.yaml").read_text())


DJANGO_URLS = '''
from django.urls import path


def boom(request):
    raise RuntimeError("boom-" + request.GET.get("marker", ""))


urlpatterns = [path("boom/", boom)]
'''

DJANGO_WSGI = "from django.core.wsgi import get_wsgi_application\napplication = get_wsgi_application()\n"


def _readme_django_logging() -> str:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    after = readme.split("Put this in the settings of every Django customer", 1)[1]
    return after.split("```python\n", 1)[1].split("```", 1)[0]


def test_django_500_traceback_reaches_hostctl_logs_with_the_readme_logging(make_server, django_venv: Path) -> None:
    """With DEBUG off, Django's default LOGGING sends a 500's traceback only to mail_admins: `quiet`
    (no LOGGING) shows none in `hostctl logs`; `loud` (the README's LOGGING snippet, read from the
    README) shows the traceback."""
    box = Sandbox()
    try:
        venv = django_venv  # the session's (this test only reads it)
        for name, logging in (("quiet", ""), ("loud", _readme_django_logging())):
            site = box.root / name
            site.mkdir()
            (site / "settings.py").write_text(f"DEBUG = False\nALLOWED_HOSTS = ['*']\nSECRET_KEY = 'x' * 50\n"
                                              f"ROOT_URLCONF = 'urls'\nINSTALLED_APPS = []\n{logging}")
            (site / "urls.py").write_text(DJANGO_URLS)
            (site / "wsgi.py").write_text(DJANGO_WSGI)
            box.write_customer(name, {"apps": {"web": {
                "domains": [f"{name}.example"], "wsgi": "wsgi:application", "chdir": str(site),
                "virtualenv": str(venv), "env": {"DJANGO_SETTINGS_MODULE": "settings"}}}})
        server = make_server(box)
        box.hostctl("apply")
        for name in ("quiet", "loud"):
            marker = os.urandom(4).hex()
            wait_for(lambda: server.request(f"{name}.example", f"/boom/?marker={marker}")[0] == 500, timeout=30,
                     what=f"{name} to answer 500")
            if name == "loud":
                def logged() -> str | None:
                    out = box.hostctl("logs", name, "-n", "50").stdout
                    return out if f"boom-{marker}" in out else None

                out = wait_for(logged, timeout=15, what="the traceback in the app's log")
                assert "Traceback (most recent call last)" in out and f"RuntimeError: boom-{marker}" in out, out
            else:
                time.sleep(2)  # give a traceback time to appear, if one were written
                out = box.hostctl("logs", name, "-n", "200").stdout + box.hostctl("logs", name, "--nginx", "-n", "200").stdout
                assert "Traceback" not in out and f"boom-{marker}\n" not in out, out
    finally:
        box.cleanup()
