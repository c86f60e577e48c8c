"""Act on one customer's app on the server it runs on, as that customer: standard library only.

`hostctl run`, `restart` and `release` build a request (``apps.py``) and hand it
to ``handle`` here: imported in-process on this host, or, for a multi-host
inventory, this module's whole source is run by the server's ``python3 -c``
(as ``status_probe`` is), so every host runs the same code.

The rule that keeps root safe in a tree the customer can write: root only
creates the app root itself (whose parents must be root's) and reads the
``current`` link with ``readlink`` through a directory opened ``O_NOFOLLOW``.
Everything inside the app root (unpacking, the virtualenv, hooks, the
``current`` switch, the reload trigger, pruning) happens in a child process
that first joins the customer's cgroup (pid to ``cgroup.procs``, still root),
then drops to the customer (``initgroups``/``setgid``/``setuid``, nothing of
root left) and only then touches a path, so a planted symlink is followed with
the customer's own rights.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

MARK = "@@hostctl-apps@@"
CURRENT = "current"
RELEASES = "releases"
VENVS = "venvs"
VENV_LINK = ".venv"
VENV_DONE = ".hostctl-complete"
RELOAD_FILE = "reload.touch"
STATS_LIMIT = 4 << 20
RELEASE_ID = re.compile(r"^[0-9]{8}T[0-9]{6}Z(?:-[0-9]+)?$")
REQUIREMENTS = ("requirements.txt", "pyproject.toml")
STANDARD_PATH = "/usr/local/bin:/usr/bin:/bin"


class AgentError(Exception):
    """A step failed; the message says which and why."""


def say(message: str) -> None:
    sys.stderr.write(f"hostctl: {message}\n")
    sys.stderr.flush()


# --- the customer: cgroup, user, environment ------------------------------------------


def cgroup_procs(spec: dict | None, customer: str, mounts_text: str | None = None) -> list[str]:
    """The ``cgroup.procs`` files of the customer's cgroup on this host (one per v1 controller, or v2's)."""
    if not spec or spec.get("mode") == "off":
        return []
    if mounts_text is None:
        with open("/proc/self/mounts", encoding="utf-8") as fh:
            mounts_text = fh.read()
    v1: dict[str, str] = {}
    v2 = spec.get("v2_root")
    for line in mounts_text.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[2] == "cgroup":
            for c in parts[3].split(","):
                if c in ("memory", "cpu", "pids"):
                    v1.setdefault(c, parts[1])
        elif len(parts) >= 3 and parts[2] == "cgroup2" and v2 is None:
            v2 = parts[1]
    dirs = []
    if spec.get("mode") in ("auto", "v1", None):
        dirs += [os.path.join(spec["v1_root"], c) for c in v1] if spec.get("v1_root") else list(v1.values())
    if spec.get("mode") in ("auto", "v2", None) and v2:
        dirs.append(v2)
    found = []
    for d in dict.fromkeys(dirs):
        leaf = os.path.join(d, spec["parent"], customer)
        if os.path.isfile(os.path.join(leaf, "cgroup.procs")):
            found.append(os.path.join(leaf, "cgroup.procs"))
    if not found and spec.get("required"):
        raise AgentError(f"customer {customer!r} has no cgroup on this host (run `hostctl apply` or `hostctl limits --apply`)")
    return found


def account(name: str | None) -> dict | None:
    """uid, gid and home of the customer's Unix user on this host (None: stay the invoking user)."""
    if name is None:
        return None
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise AgentError(f"Unix user {name!r} does not exist on this host (run `hostctl apply --create-users`)") from None
    if entry.pw_uid == 0:
        raise AgentError(f"Unix user {name!r} is root; customer commands never run as root")
    return {"name": name, "uid": entry.pw_uid, "gid": entry.pw_gid, "home": entry.pw_dir}


def environment(env: dict, user: dict | None, workdir: str | None, venv: str | None) -> dict:
    """The app's environment: nothing of the caller's (root's) but a standard PATH, plus the app's own values."""
    out = {"PATH": STANDARD_PATH, "LANG": "C.UTF-8"}
    if user:
        home = user["home"] if user["home"] and os.path.isdir(user["home"]) else (workdir or "/")
        out.update(HOME=home, USER=user["name"], LOGNAME=user["name"])
    else:
        out["HOME"] = os.environ.get("HOME", "/")
    if venv:
        out.update(VIRTUAL_ENV=venv, PATH=f"{venv}/bin:{STANDARD_PATH}")
    out.update(env)
    return out


def become(user: dict | None, procs: list[str]) -> None:
    """In a forked child: join the cgroup (as root), then drop to the customer for good."""
    for path in procs:
        fd = os.open(path, os.O_WRONLY | os.O_NOFOLLOW)
        try:
            os.write(fd, str(os.getpid()).encode())
        finally:
            os.close(fd)
    if user is not None:
        os.initgroups(user["name"], user["gid"])
        os.setgid(user["gid"])
        os.setuid(user["uid"])
        if os.getresuid() != (user["uid"],) * 3 or 0 in os.getgroups():
            raise OSError("could not drop root")
    os.umask(0o027)


def _child_exit(code: int) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def as_customer(user: dict | None, procs: list[str], work, stdin_fd: int | None = None,
                stdout_to_stderr: bool = False) -> int:
    """Run ``work()`` in a child that became the customer; its exit status (``work`` returns an int or raises)."""
    pid = os.fork()
    if pid == 0:
        code = 70
        try:
            if stdin_fd is not None:
                os.dup2(stdin_fd, 0)
            if stdout_to_stderr:
                os.dup2(2, 1)
            become(user, procs)
            code = int(work() or 0)
        except AgentError as exc:
            say(str(exc))
            code = 1
        except BaseException as exc:  # noqa: BLE001 - the child reports and exits, never returns
            say(f"{type(exc).__name__}: {exc}")
            code = 70
        _child_exit(code)
    if stdin_fd is not None:
        os.close(stdin_fd)
    return wait_status(pid)


def wait_status(pid: int) -> int:
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


def exec_in(argv: list[str], env: dict, cwd: str | None):
    """A ``work`` for ``as_customer``: enter ``cwd`` (as the customer) and exec ``argv``."""
    def work() -> int:
        if cwd:
            os.chdir(cwd)
        try:
            os.execvpe(argv[0], argv, env)
        except OSError as exc:
            say(f"cannot run {argv[0]!r}: {exc.strerror}")
            return 127
        return 127
    return work


def shell(command: str, env: dict, cwd: str, timeout: float) -> int:
    """As the customer already: ``/bin/sh -c command`` in ``cwd``, in its own process group, killed at ``timeout``."""
    proc = subprocess.Popen(["/bin/sh", "-c", command], cwd=cwd, env=env, stdout=sys.stderr, start_new_session=True)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise AgentError(f"{command!r} did not finish within {timeout:.0f} s") from None


# --- root-side reads (never through the customer's symlinks) --------------------------


def check_parents(root: str) -> None:
    """Every directory above the app root must be a real directory owned by root (no customer can swap it)."""
    path = "/"
    for part in [p for p in os.path.dirname(root).split("/") if p]:
        path = os.path.join(path, part)
        st = os.lstat(path)
        if not os.path.isdir(path) or os.path.islink(path) or st.st_uid != 0 or st.st_mode & 0o022 and not st.st_mode & 0o1000:
            raise AgentError(f"{path!r} (above the app root {root!r}) must be a directory owned by root and not writable by others")


def ensure_root(root: str, user: dict | None, group: int) -> None:
    """Create the app root for the customer (mode 2750, group: nginx's, so it can serve static files)."""
    if user is not None:
        check_parents(root)
    try:
        st = os.lstat(root)
    except FileNotFoundError:
        os.mkdir(root, 0o700)
        if user is not None:
            os.chown(root, user["uid"], group if group >= 0 else user["gid"], follow_symlinks=False)
        os.chmod(root, 0o2750)
        return
    if os.path.islink(root) or not os.path.isdir(root):
        raise AgentError(f"the app root {root!r} is not a directory")
    if user is not None and st.st_uid != user["uid"]:
        raise AgentError(f"the app root {root!r} belongs to uid {st.st_uid}, not to {user['name']!r}")


def read_current(root: str) -> str | None:
    """The release ``current`` names (``releases/<id>`` -> id), read with readlink only; None when absent or odd."""
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        target = os.readlink(CURRENT, dir_fd=fd)
    except OSError:
        return None
    finally:
        os.close(fd)
    head, _, name = target.rpartition("/")
    return name if head == RELEASES and RELEASE_ID.fullmatch(name) else None


def list_releases(root: str) -> list[str]:
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        return []
    try:
        sub = os.open(RELEASES, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
    except OSError:
        os.close(fd)
        return []
    os.close(fd)
    try:
        return sorted(name for name in os.listdir(sub) if RELEASE_ID.fullmatch(name))
    finally:
        os.close(sub)


def read_socket(path: str, timeout: float = 2.0) -> dict | None:
    """A uWSGI stats socket's JSON, read with a time and size bound (it is the customer's socket)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(path)
            data = bytearray()
            deadline = time.monotonic() + timeout
            while len(data) < STATS_LIMIT and time.monotonic() < deadline:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        return json.loads(data.decode("utf-8", errors="replace"))
    except (OSError, ValueError):
        return None


def workers(stats: dict | None) -> dict[int, bool]:
    """pid -> accepting, of a vassal's workers."""
    out = {}
    for w in (stats or {}).get("workers") or []:
        if isinstance(w, dict) and isinstance(w.get("pid"), int) and w["pid"] > 0:
            out[w["pid"]] = bool(w.get("accepting", 1)) and w.get("status") != "cheap"
    return out


# --- restart ----------------------------------------------------------------------------


def bump_mtime(path: str) -> None:
    """Give ``path`` an mtime second after its current one (the Emperor's strict whole-second rule)."""
    st = os.lstat(path)
    later = max(int(time.time()), int(st.st_mtime) + 1)
    os.utime(path, (later, later), follow_symlinks=False)


def emperor_vassal(emperor_stats: str, vassal: str) -> dict | None:
    data = read_socket(emperor_stats)
    for v in (data or {}).get("vassals") or []:
        if isinstance(v, dict) and v.get("id") == os.path.basename(vassal):
            return v
    return None


def restart(req: dict) -> dict:
    """Graceful: bump the vassal's mtime (the Emperor reloads it: workers finish their requests, the socket
    stays). Hard: SIGQUIT to the vassal's master (pid from the Emperor's own stats, never the customer's)
    and the Emperor starts it again."""
    vassal, emperor_stats = req["vassal"], req["emperor_stats"]
    if not os.path.isfile(vassal) or os.path.islink(vassal):
        raise AgentError(f"{vassal} does not exist: the app is not applied on this host (or it is stopped)")
    before = emperor_vassal(emperor_stats, vassal)
    if req.get("hard"):
        if before is None or not before.get("pid"):
            raise AgentError("the Emperor does not report this app running; nothing to stop")
        os.kill(int(before["pid"]), signal.SIGQUIT)
        deadline = time.monotonic() + req.get("timeout", 60)
        while time.monotonic() < deadline:
            now = emperor_vassal(emperor_stats, vassal)
            if now is not None and now.get("pid") and now["pid"] != before["pid"]:
                break
            time.sleep(0.2)
        else:
            raise AgentError("the Emperor did not start the app again in time")
        return {"pid_before": before["pid"], "pid_after": now["pid"]}
    bump_mtime(vassal)
    read_socket(emperor_stats)  # makes the Emperor rescan now
    return {"pid_before": before and before.get("pid")}


# --- run --------------------------------------------------------------------------------


def run(req: dict) -> int:
    """`hostctl run`: the command as the customer, in its cgroup, with the app's environment; its exit status."""
    user = account(req.get("user"))
    procs = cgroup_procs(req.get("cgroup"), req["customer"])
    env = environment(req.get("env") or {}, user, req.get("workdir"), req.get("venv"))
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the command's (same terminal)
    try:
        return as_customer(user, procs, exec_in(req["argv"], env, req.get("workdir")))
    finally:
        signal.signal(signal.SIGINT, old)


# --- entry points ------------------------------------------------------------------------


def handle(req: dict, stdin=None) -> tuple[int, dict]:
    """Run one request; (exit status, result). ``AgentError`` propagates to the caller."""
    op = req["op"]
    if op == "run":
        return run(req), {}
    if op == "restart":
        return 0, restart(req)
    if op in ("release", "rollback", "list"):
        from_releases = globals().get("release_" + op)
        if from_releases is None:
            raise AgentError(f"this agent cannot {op}")
        return from_releases(req, stdin)
    raise AgentError(f"unknown request {op!r}")


def encode(req: dict) -> str:
    return base64.b64encode(json.dumps(req).encode()).decode()


def main(argv: list[str]) -> int:
    req = json.loads(base64.b64decode(argv[1]))
    try:
        status, result = handle(req, sys.stdin.buffer)
    except AgentError as exc:
        say(str(exc))
        status, result = 1, {"error": str(exc)}
    sys.stdout.flush()
    if req["op"] != "run":
        sys.stdout.write("\n" + MARK + json.dumps(result) + "\n")
        sys.stdout.flush()
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv))
