"""Test harness: build inventories on disk and run a real Emperor and nginx.

``Sandbox`` is a temporary inventory (mode 0755 all the way down, so nginx's
workers can reach the sockets when the tests run as root). ``Server`` runs
`hostctl serve` for it as a subprocess, talks HTTP to nginx with Host headers,
and on stop verifies that every process it started is gone.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterable

import psutil
import yaml

APPS = Path(__file__).parent / "apps"
# pip's cache for the virtualenvs tests build (customers' pips write to it too, hence mode 1777): a rerun builds from it
PIP_CACHE = os.environ.get("HOSTCTL_TEST_PIP_CACHE", "/tmp/hostctl-test-pip-cache")
REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate: Callable[[], Any], timeout: float = 15.0, interval: float = 0.02, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except Exception as exc:  # noqa: BLE001 - keep polling until the deadline
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


class Sandbox:
    """A throw-away inventory directory with the echo app available."""

    def __init__(self, settings: dict[str, Any] | None = None, base: str = "/tmp"):
        self.root = Path(tempfile.mkdtemp(prefix="hostctl-test-", dir=base))
        os.chmod(self.root, 0o755)
        self.inventory = self.root / "inventory"
        (self.inventory / "customers").mkdir(parents=True)
        self.apps = self.root / "apps"
        self.apps.mkdir()
        shutil.copy(APPS / "echo.py", self.apps / "echo.py")
        self.port = free_port()
        base_settings: dict[str, Any] = {
            "emperor_dir": "../vassals", "nginx_dir": "../nginx", "run_dir": "../run",
            "log_dir": "../log", "state_dir": "../state",
            "nginx": {"listen": f"127.0.0.1:{self.port}"},
            "isolation": {"users": "invoker"},
            "cgroup": {"mode": "off"},  # tests that need cgroups set their own mode and parent
            "defaults": {"processes": 1},
        }
        for key, value in (settings or {}).items():
            if isinstance(value, dict) and isinstance(base_settings.get(key), dict):
                base_settings[key] = {**base_settings[key], **value}
            else:
                base_settings[key] = value
        self.write_settings(base_settings)

    def path(self, name: str) -> Path:
        return self.root / name

    def write_settings(self, data: dict[str, Any]) -> None:
        (self.inventory / "hostctl.yaml").write_text(yaml.safe_dump(data, sort_keys=False))

    def write_customer(self, name: str, data: dict[str, Any] | str) -> Path:
        path = self.inventory / "customers" / f"{name}.yaml"
        path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
        return path

    def echo_app(self, domains: list[str], **extra: Any) -> dict[str, Any]:
        app = {"domains": domains, "wsgi": str(self.apps / "echo.py")}
        app.update(extra)
        return app

    def hostctl(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        proc = subprocess.run([sys.executable, "-m", "hostctl", "-i", str(self.inventory), *args],
                              capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"hostctl {' '.join(args)} exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
        return proc

    def snapshot(self) -> dict[str, tuple[bytes, float]]:
        """Content and mtime of every file under the sandbox, except logs and runtime files."""
        out = {}
        for dirpath, _dirs, files in os.walk(self.root):
            if any(part in ("log", "run") for part in Path(dirpath).relative_to(self.root).parts[:1]):
                continue
            for name in files:
                if name == "apply.lock":  # holds the pid of the last apply; not configuration
                    continue
                path = os.path.join(dirpath, name)
                out[path] = (Path(path).read_bytes(), os.stat(path).st_mtime)
        return out

    def cleanup(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


class Server:
    """`hostctl serve` for a sandbox: a real uWSGI Emperor and a real nginx."""

    def __init__(self, sandbox: Sandbox):
        self.sandbox = sandbox
        self.log = open(sandbox.path("serve.log"), "w+")
        self.proc = subprocess.Popen([sys.executable, "-m", "hostctl", "-i", str(sandbox.inventory), "serve"],
                                     stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        self.pids: set[int] = set()
        try:
            wait_for(self._ready, timeout=30, what="hostctl serve to be ready")
        except AssertionError:
            self.stop()
            raise

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"hostctl serve exited {self.proc.returncode}:\n{self.output()}")
        return "serving" in self.output()

    def output(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text()

    def request(self, host: str, path: str = "/", timeout: float = 5.0) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.sandbox.port, timeout=timeout)
        try:
            conn.request("GET", path, headers={"Host": host})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()

    def get_json(self, host: str, path: str = "/") -> dict[str, Any]:
        status, body = self.request(host, path)
        assert status == 200, f"{host}{path}: HTTP {status}: {body[:300]!r}"
        return json.loads(body)

    def wait_json(self, host: str, predicate: Callable[[dict[str, Any]], bool] = lambda _: True,
                  timeout: float = 15.0) -> dict[str, Any]:
        def attempt() -> dict[str, Any] | None:
            status, body = self.request(host)
            if status != 200:
                return None
            data = json.loads(body)
            return data if predicate(data) else None

        return wait_for(attempt, timeout=timeout, what=f"{host} to answer as expected")

    def wait_status(self, host: str, status: int, timeout: float = 15.0) -> None:
        wait_for(lambda: self.request(host)[0] == status, timeout=timeout, what=f"{host} to answer {status}")

    def unserved(self, host: str) -> bool:
        """Whether nginx closes the connection for ``host`` without an answer (the default server's 444)."""
        try:
            self.request(host)
        except http.client.RemoteDisconnected:
            return True
        return False

    def wait_unserved(self, host: str, timeout: float = 15.0) -> None:
        wait_for(lambda: self.unserved(host), timeout=timeout, what=f"{host} to be served by nobody (444)")

    def nginx_workers(self) -> set[int]:
        """Pids of nginx's worker processes (a reload replaces them)."""
        pidfile = self.sandbox.path("run") / "serve" / "nginx.pid"
        master = psutil.Process(int(pidfile.read_text().strip()))
        return {child.pid for child in master.children()}

    def tree(self) -> set[int]:
        try:
            parent = psutil.Process(self.proc.pid)
            return {parent.pid} | {p.pid for p in parent.children(recursive=True)}
        except psutil.NoSuchProcess:
            return set()

    def stop(self) -> None:
        """Stop serve with SIGINT and check that nothing it started is left running."""
        started = self.tree() | self.pids
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
                raise AssertionError("hostctl serve did not stop within 30 s of SIGINT")
        self.log.close()
        survivors = [pid for pid in started if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
        survivors += leftover_processes(self.sandbox.root)
        for pid in survivors:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        assert not survivors, f"processes left running after serve stopped: {survivors}"


def http_status(port: int, path: str = "/", host: str | None = None, timeout: float = 5.0) -> int:
    """One GET on 127.0.0.1:port; its HTTP status, or 0 when the connection failed."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Host": host} if host else {})
        response = conn.getresponse()
        response.read()
        return response.status
    except OSError:
        return 0
    finally:
        conn.close()


def run_cli(inventory: Path, *args: str) -> subprocess.CompletedProcess:
    """The real CLI, in-process: for tests of commands whose output is under test but whose
    process start is not (a subprocess per call costs about a second on a loaded machine)."""
    from click.testing import CliRunner

    from hostctl.cli.main import cli

    result = CliRunner().invoke(cli, ["-i", str(inventory), *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr)


def leftover_processes(root: Path) -> list[int]:
    """Processes whose command line or working directory is inside ``root``."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "cwd"]):
        try:
            cmd = " ".join(proc.info["cmdline"] or [])
            cwd = proc.info["cwd"] or ""
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if proc.info["pid"] == os.getpid():
            continue
        if str(root) in cmd or cwd.startswith(str(root)):
            if proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc.info["pid"])
    return found


# --- root setups: users, cgroups, a server; torn down whatever happened -------------------------------


def require_root(why: str) -> None:
    """Skip the test (or module fixture) unless it runs as root; ``why``: what needs root."""
    if os.geteuid() != 0:
        import pytest

        pytest.skip(f"needs root ({why})")


V1_CGROUP = "/sys/fs/cgroup"  # this machine's cgroup v1 mounts


def require_cgroup_v1() -> None:
    """Skip unless root with a writable cgroup v1 memory controller (for tests that make users and cgroups)."""
    require_root("creates users and cgroups")
    memory = f"{V1_CGROUP}/memory"
    if not os.path.isfile(f"{memory}/memory.limit_in_bytes") or not os.access(memory, os.W_OK):
        import pytest

        pytest.skip(f"no writable cgroup v1 memory controller at {memory}")


def _rmdir(path: str) -> bool:
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass
    except OSError:
        return False
    return True


def remove_cgroups(dirs: Iterable[str], timeout: float = 30.0) -> None:
    """rmdir cgroups, leaves before parents, each once its processes have gone (the Emperor buries vassals in ~3 s)."""
    for d in sorted(dirs, key=len, reverse=True):
        if os.path.isdir(d):
            wait_for(lambda d=d: _rmdir(d), timeout=timeout, what=f"{d} to be empty and removed")


def _delete_users(users: Iterable[str]) -> None:
    """Kill what is left of each (random, test-made) user's processes, then delete the user."""
    for user in users:
        subprocess.run(["pkill", "-KILL", "-u", user], capture_output=True)
        subprocess.run(["userdel", user], capture_output=True)


def tear_down(box: Sandbox, server: "Server | None" = None, users: Iterable[str] = (), cgroups: Iterable[str] = (),
              first: Callable[[], object] | None = None, last: Callable[[], object] | None = None) -> None:
    """Remove what a root setup made, in this order, each step also when one before it failed (the first
    failure is raised at the end): ``first`` (e.g. processes the test started), the server (Emperor and
    nginx), the cgroups, the Unix users (and any process left of theirs), the sandbox, ``last`` (e.g. a canary)."""
    steps = [first, server.stop if server is not None else None, (lambda: remove_cgroups(cgroups)) if cgroups else None,
             lambda: _delete_users(users), box.cleanup, last]
    failed: BaseException | None = None
    for step in steps:
        try:
            if step is not None:
                step()
        except BaseException as exc:  # noqa: BLE001 - every step runs; the first failure is raised below
            failed = failed or exc
    if failed is not None:
        raise failed


def operator_nginx(ops: Path, port: int, hostctl_nginx: Path) -> str:
    """The operator's own nginx configuration in ``ops``: its vhost for panel.hosting.test on ``port``
    (``ops/sites/panel``, server_name on line 2) beside hostctl's server blocks in ``hostctl_nginx``,
    with what hostctl's include defines in production. Answers the `nginx -t` command that reads it."""
    (ops / "sites").mkdir(parents=True)
    (ops / "sites" / "panel").write_text(
        f"# the operator's own vhost\nserver {{\n    listen {port};\n    server_name panel.hosting.test;\n"
        "    return 200 'panel';\n}\n")
    (ops / "nginx.conf").write_text(f"""pid {ops}/nginx.pid;
error_log stderr;
events {{ }}
http {{
    access_log off;
    limit_conn_zone $server_name zone=hostctl_conn:10m;  # what hostctl's include defines in production
    include {ops}/sites/*;
    include {hostctl_nginx}/*.conf;
}}
""")
    return f"nginx -t -q -p {ops} -c {ops}/nginx.conf -e stderr"
