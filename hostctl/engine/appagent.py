"""Act on one customer's app on the server it runs on, as that customer: standard library only.

`hostctl run`, `restart` and `release` build a request (``targets/apps.py``) and hand it
to ``handle`` here: imported in-process on this host, or, for a multi-host
inventory, this module's whole source is run by the server's ``python3 -c``
(as ``status_probe`` is), so every host runs the same code.

A released app's tree is root's and only readable by the customer, so that the
app, running as the customer, cannot rewrite its own code (see "the release
tree" below). Root makes the directories, switches ``current``, prunes and
seals, always through descriptors opened ``O_NOFOLLOW`` in directories of its
own. What runs the customer's code or its tools (unpacking, the virtualenv,
hooks) happens in a child process that first joins the customer's cgroup (pid
to ``cgroup.procs``, still root), then drops to the customer
(``initgroups``/``setgid``/``setuid``, nothing of root left), in directories
root made for it and takes back ("seals") when the build is done.
"""

from __future__ import annotations

import base64
import codecs
import hashlib
import http.client
import json
import os
import pwd
import re
import select
import shutil
import signal
import socket
import stat
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


def account(name: str | None, rule: dict | None = None) -> dict | None:
    """uid, gid and home of the customer's Unix user on this host (None: stay the invoking user).

    ``rule`` (``uid_min``, ``uid_max``, ``nginx_user``, ``nginx_group``): the part of
    ``engine/core/accounts.py``'s rule this host's own user database decides, checked here
    so that a server refuses what apply refuses (nginx's user or group, a system account)."""
    if name is None:
        return None
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise AgentError(f"Unix user {name!r} does not exist on this host (run `hostctl apply --create-users`)") from None
    if entry.pw_uid == 0:
        raise AgentError(f"Unix user {name!r} is root; customer commands never run as root")
    why = refused(entry, rule) if rule else None
    if why:
        raise AgentError(f"Unix user {name!r} {why}; customer commands never run as it (apply refuses it too)")
    return {"name": name, "uid": entry.pw_uid, "gid": entry.pw_gid, "home": entry.pw_dir}


def refused(entry: pwd.struct_passwd, rule: dict) -> str | None:
    """Why ``entry`` may not be a customer's account on this host, or None."""
    import grp

    if not rule["uid_min"] <= entry.pw_uid <= rule["uid_max"]:
        return f"has uid {entry.pw_uid}, outside isolation.uid_min..uid_max ({rule['uid_min']}..{rule['uid_max']})"
    nginx_gids = set()
    try:
        nginx = pwd.getpwnam(rule["nginx_user"])
        if nginx.pw_uid == entry.pw_uid:
            return f"is nginx's user ({rule['nginx_user']})"
        nginx_gids.add(nginx.pw_gid)
    except KeyError:
        pass
    for name in filter(None, [rule.get("nginx_group")]):
        try:
            nginx_gids.add(grp.getgrnam(name).gr_gid)
        except KeyError:
            pass
    for gid in nginx_gids:
        try:
            members = grp.getgrgid(gid).gr_mem
        except KeyError:
            members = []
        if entry.pw_gid == gid or entry.pw_name in members:
            return "is in nginx's group, which can enter every customer's socket directory"
    return None


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
    os.environ.clear()  # nothing of the caller's environment reaches the customer's processes
    os.environ.update(PATH=STANDARD_PATH, LANG="C.UTF-8")


def _child_exit(code: int) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def as_customer(user: dict | None, procs: list[str], work, stdin_fd: int | None = None,
                stdout_to_stderr: bool = False) -> int:
    """Run ``work()`` in a child that became the customer; its exit status (``work`` returns an int or raises)."""
    def redirect() -> None:
        if stdin_fd is not None:
            os.dup2(stdin_fd, 0)
        if stdout_to_stderr:
            os.dup2(2, 1)

    pid = os.fork()
    if pid == 0:
        be_customer(user, procs, work, redirect)
    if stdin_fd is not None:
        os.close(stdin_fd)
    return wait_status(pid)


def be_customer(user: dict | None, procs: list[str], work, prepare) -> None:
    """In a forked child: ``prepare()`` (as root), become the customer, run ``work()``, exit with its status."""
    code = 70
    try:
        prepare()
        become(user, procs)
        code = int(work() or 0)
    except AgentError as exc:
        say(str(exc))
        code = 1
    except BaseException as exc:  # noqa: BLE001 - the child reports and exits, never returns
        say(f"{type(exc).__name__}: {exc}")
        code = 70
    _child_exit(code)


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
    """As the customer already: ``/bin/sh -c command`` in ``cwd``, in its own session, killed at ``timeout``.

    It gets no terminal of the operator's: stdin is /dev/null, and its output comes through a pipe that
    this process relays with control characters escaped (``Relay``). The step ends when the shell does;
    a daemon it left holding the pipe is not waited for.
    """
    read_fd, write_fd = os.pipe()
    try:
        proc = subprocess.Popen(["/bin/sh", "-c", command], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                stdout=write_fd, stderr=write_fd, start_new_session=True)
    finally:
        os.close(write_fd)
    relay = Relay(read_fd)
    deadline = time.monotonic() + timeout
    try:
        while proc.poll() is None:
            left = deadline - time.monotonic()
            if left <= 0:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                raise AgentError(f"{command!r} did not finish within {timeout:.0f} s")
            if not relay.pump(min(left, 0.2)):
                time.sleep(min(left, 0.05))
        relay.drain(RELAY_DRAIN)
    finally:
        relay.close()
    return proc.returncode


CONTROL = re.compile("[\\x00-\\x08\\x0b-\\x1f\\x7f-\\x9f]")  # C0 but newline and tab, DEL, C1


def for_terminal(text: str) -> str:
    """``text`` with every control character but newline and tab shown as ``\\xNN``, as journalctl does.

    What a customer's code printed (hook output, its logs) may hold escape sequences that retitle,
    redraw or, in some terminal emulators, answer into root's terminal. ``hostctl logs`` uses this too."""
    return CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


RELAY_DRAIN = 0.5  # seconds to pass on what a finished hook wrote; a daemon holding the pipe gets no more


class Relay:
    """The output of the customer's command, passed to our stderr with control characters shown as \\xNN."""

    def __init__(self, fd: int) -> None:
        self.fd, self.open = fd, True
        self.decoder = codecs.getincrementaldecoder("utf-8")("replace")

    def pump(self, wait: float) -> bool:
        """Pass on one chunk if one comes within ``wait`` seconds; False once the pipe is at its end."""
        if not self.open:
            return False
        ready, _, _ = select.select([self.fd], [], [], wait)
        if ready:
            chunk = os.read(self.fd, 65536)
            if not chunk:
                self.open = False
            self.write(self.decoder.decode(chunk, final=not chunk))
        return self.open

    def drain(self, limit: float) -> None:
        end = time.monotonic() + limit
        while self.open and time.monotonic() < end:
            ready, _, _ = select.select([self.fd], [], [], 0.05)
            if not ready:
                return
            self.pump(0)

    def write(self, text: str) -> None:
        if text:
            sys.stderr.write(for_terminal(text))
            sys.stderr.flush()

    def close(self) -> None:
        os.close(self.fd)


# --- root-side reads (never through the customer's symlinks) --------------------------


def check_parents(root: str) -> None:
    """Every directory above the app root must be a real directory owned by root (no customer can swap it)."""
    path = "/"
    for part in [p for p in os.path.dirname(root).split("/") if p]:
        path = os.path.join(path, part)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return  # created by root below
        if not os.path.isdir(path) or os.path.islink(path) or st.st_uid != 0 or st.st_mode & 0o022 and not st.st_mode & 0o1000:
            raise AgentError(f"{path!r} (above the app root {root!r}) must be a directory owned by root and not writable by others")


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
    try:  # real directories only: a symlink the customer planted there is not a release
        return sorted(name for name in os.listdir(sub) if RELEASE_ID.fullmatch(name)
                      and stat.S_ISDIR(os.stat(name, dir_fd=sub, follow_symlinks=False).st_mode))
    finally:
        os.close(sub)


def read_socket(path: str, timeout: float = 2.0) -> dict | None:
    """A uWSGI stats socket's JSON, read with a time and size bound (it is the customer's socket,
    in its own directory: a symlink planted there is never connected through)."""
    try:
        if not stat.S_ISSOCK(os.lstat(path).st_mode):
            return None
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
    except (OSError, ValueError, RecursionError):  # RecursionError: JSON nested deeper than Python's stack
        return None


def workers(stats: dict | None) -> dict[int, bool]:
    """pid -> accepting, of a vassal's workers."""
    out = {}
    for w in (stats or {}).get("workers") or []:
        if isinstance(w, dict) and isinstance(w.get("pid"), int) and w["pid"] > 0:
            out[w["pid"]] = bool(w.get("accepting", 1)) and w.get("status") != "cheap"
    return out


# --- the release tree: root's, readable by the customer, never writable by its app ------------
#
# <root>/             root:<customer> 0751   only root adds or renames entries (current, releases/, venvs/)
#   releases/<id>/    root:<customer>        sealed after the build: dirs 0750 (0751 on the way to a static
#   venvs/<hash>/     root:<customer>        target, 0755 in it), files 0640 (0750 executable; +r in static)
#   current           root's symlink         replaced by root (symlink + rename in root's directory)
#   data/             <customer>:nginx 2750  the app's own state (SQLite, uploads): the one place it writes
#   .cache/           <customer> 0700        pip's cache, for builds
#   reload.touch      <customer>'s file      the customer pulls its trigger; it cannot replace the file
# A build runs as the customer in a release directory (and a new virtualenv) that root made for it and
# gives to root once the build is done ("sealing": through descriptors, never following a link).

DATA = "data"
CACHE = ".cache"
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW


def code_ids(user: dict | None) -> tuple[int, int] | None:
    """(owner, group) of sealed code: root and the customer's group; None without per-customer users (no chown)."""
    return None if user is None else (0, user["gid"])


def open_dir(name: str, dir_fd: int | None = None) -> int:
    return os.open(name, DIR_FLAGS, dir_fd=dir_fd)


def make_dir(parent: int, name: str, uid: int | None, gid: int, mode: int) -> None:
    """``name`` in ``parent`` (a directory of root's) with owner and mode set through its descriptor."""
    os.mkdir(name, 0o700, dir_fd=parent)
    fd = open_dir(name, parent)
    try:
        if uid is not None:
            os.fchown(fd, uid, gid)
        os.fchmod(fd, mode)  # after fchown, which clears setgid
    finally:
        os.close(fd)


def remove_entry(parent: int, name: str) -> None:
    """A tree or a link in root's directory ``parent``, never followed (``rmtree`` on a descriptor)."""
    try:
        st = os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        if not shutil.rmtree.avoids_symlink_attacks:
            raise AgentError("this platform's rmtree can follow symlinks; not removing a customer's tree as root")
        shutil.rmtree(name, dir_fd=parent)
    else:
        os.unlink(name, dir_fd=parent)


def public_paths(root: str, static: list[str]) -> tuple[str, ...]:
    """The static targets inside a release (``<root>/current/static`` -> ``static``; ``""``: all of it)."""
    live = os.path.join(root, CURRENT)
    out = []
    for target in static:
        target = os.path.normpath(target)
        if target == live or target.startswith(live + "/"):
            out.append(target[len(live) + 1:])
    return tuple(out)


def visibility(path: str, public: tuple[str, ...]) -> str:
    """'public' inside a static target, 'path' on the way to one, else 'private'."""
    if any(p == "" or path == p or path.startswith(p + "/") for p in public):
        return "public"
    return "path" if any(path == "" or p.startswith(path + "/") for p in public) else "private"


def sealed_mode(st_mode: int, seen: str) -> int:
    if stat.S_ISDIR(st_mode):
        return {"public": 0o755, "path": 0o751, "private": 0o750}[seen]
    mode = 0o750 if st_mode & 0o100 else 0o640
    return mode | (0o004 if seen == "public" else 0)


def seal(fd: int, ids: tuple[int, int] | None, public: tuple[str, ...], rel: str = "") -> int:
    """Give the directory ``fd`` and everything in it to root and the customer's group, writable by root only.

    Every entry is opened ``O_NOFOLLOW|O_NONBLOCK`` from its parent's descriptor and changed through
    its own (``fchown`` first, which clears set-id bits, then an explicit mode); links are changed
    themselves (``lchown``). A FIFO, socket, device or hard-linked file stops the release: root would
    otherwise give away or open what the customer linked in. Returns the number of entries sealed."""
    if ids is not None:
        os.fchown(fd, *ids)
    os.fchmod(fd, sealed_mode(stat.S_IFDIR, visibility(rel, public)))
    count = 0
    for name in os.listdir(fd):
        path = f"{rel}/{name}" if rel else name
        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        count += 1
        if stat.S_ISLNK(st.st_mode):
            if ids is not None:
                os.chown(name, *ids, dir_fd=fd, follow_symlinks=False)
            continue
        if not (stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode)):
            raise AgentError(f"{path} is a FIFO, socket or device; a release holds files, directories and links only")
        try:
            sub = os.open(name, (DIR_FLAGS if stat.S_ISDIR(st.st_mode) else os.O_RDONLY | os.O_NOFOLLOW) | os.O_NONBLOCK,
                          dir_fd=fd)
        except OSError as exc:
            raise AgentError(f"{path} changed while it was sealed ({exc.strerror})") from None
        try:
            now = os.fstat(sub)
            if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
                raise AgentError(f"{path} changed while it was sealed")
            if stat.S_ISDIR(now.st_mode):
                count += seal(sub, ids, public, path)
                continue
            if now.st_nlink > 1:
                raise AgentError(f"{path} has {now.st_nlink} hard links; a release may not hard-link files")
            if ids is not None:
                os.fchown(sub, *ids)
            os.fchmod(sub, sealed_mode(now.st_mode, visibility(path, public)))
        finally:
            os.close(sub)
    return count


def ensure_root(root: str, user: dict | None, group: int, public: tuple[str, ...] = ()) -> None:
    """Make or take back the app root's layout (see above); ``group``: nginx's, for ``data/`` (-1: the customer's)."""
    if user is not None:
        check_parents(root)
    ids = code_ids(user)
    try:
        os.lstat(root)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(root), mode=0o755, exist_ok=True)  # root's, like the parents checked above
        os.mkdir(root, 0o700)
    if os.path.islink(root) or not os.path.isdir(root):
        raise AgentError(f"the app root {root!r} is not a directory")
    fd = open_dir(root)
    try:
        st = os.fstat(fd)
        taken = user is not None and st.st_uid == user["uid"]
        if user is not None and st.st_uid not in (0, user["uid"]):
            raise AgentError(f"the app root {root!r} belongs to uid {st.st_uid}, not to root or {user['name']!r}")
        if taken:  # the customer's, from before releases were root's: close it, then take it
            os.fchmod(fd, 0o700)
            say(f"{root}: taken over by root from {user['name']} (a running app no longer writes its code)")
        if ids is not None:
            os.fchown(fd, *ids)
        os.fchmod(fd, 0o751)
        for name in (RELEASES, VENVS):
            code_dir(fd, name, ids, taken, public if name == RELEASES else ())
        customer = (user["uid"], user["gid"]) if user else (None, -1)
        for name, gid, mode in ((DATA, group if group >= 0 else customer[1], 0o2750), (CACHE, customer[1], 0o700)):
            if not os.path.lexists(os.path.join(root, name)):  # root's directory: the customer cannot plant it
                make_dir(fd, name, customer[0], gid, mode)
        if taken:
            keep_current(fd)
        trigger(fd, user, pull=False)
    finally:
        os.close(fd)


def code_dir(root_fd: int, name: str, ids: tuple[int, int] | None, taken: bool, public: tuple[str, ...]) -> None:
    """``releases/`` or ``venvs/``: root's; when taken back, every release and finished virtualenv is sealed."""
    try:
        st = os.stat(name, dir_fd=root_fd, follow_symlinks=False)
    except FileNotFoundError:
        make_dir(root_fd, name, *(ids or (None, -1)), 0o751 if name == RELEASES else 0o750)
        return
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(name, dir_fd=root_fd)
        make_dir(root_fd, name, *(ids or (None, -1)), 0o751 if name == RELEASES else 0o750)
        return
    if not taken:
        return
    fd = open_dir(name, root_fd)
    try:
        os.fchmod(fd, 0o700)
        if ids is not None:
            os.fchown(fd, *ids)
        for entry in os.listdir(fd):
            kind = os.stat(entry, dir_fd=fd, follow_symlinks=False).st_mode
            finished = name == RELEASES or venv_finished(fd, entry)
            if stat.S_ISDIR(kind) and finished and (name == VENVS or RELEASE_ID.fullmatch(entry)):
                sub = open_dir(entry, fd)
                try:
                    seal(sub, ids, public if name == RELEASES else ())
                finally:
                    os.close(sub)
            else:
                remove_entry(fd, entry)  # links planted there, half-built virtualenvs
        os.fchmod(fd, 0o751 if name == RELEASES else 0o750)
    finally:
        os.close(fd)


def venv_finished(venvs_fd: int, key: str) -> bool:
    """Whether ``venvs/<key>`` is a directory whose build wrote its completion mark (links never followed)."""
    try:
        return (stat.S_ISDIR(os.stat(key, dir_fd=venvs_fd, follow_symlinks=False).st_mode)
                and stat.S_ISREG(os.stat(f"{key}/{VENV_DONE}", dir_fd=venvs_fd, follow_symlinks=False).st_mode))
    except OSError:
        return False


def keep_current(root_fd: int) -> None:
    """A ``current`` link the customer made (older layout): made again by root, or removed if it is odd."""
    try:
        target = os.readlink(CURRENT, dir_fd=root_fd)
    except FileNotFoundError:
        return
    except OSError:
        remove_entry(root_fd, CURRENT)
        return
    head, _, rid = target.rpartition("/")
    if head == RELEASES and RELEASE_ID.fullmatch(rid):
        point_current(root_fd, rid)
    else:
        remove_entry(root_fd, CURRENT)


def point_current(root_fd: int, rid: str) -> None:
    """``current`` -> ``releases/<rid>``: a new link renamed over it, in root's directory."""
    st = os.stat(os.path.join(RELEASES, rid), dir_fd=root_fd, follow_symlinks=False)  # releases/ is root's
    if not stat.S_ISDIR(st.st_mode):
        raise AgentError(f"there is no release {rid}")
    tmp = f".{CURRENT}-{rid}-{os.getpid()}"
    remove_entry(root_fd, tmp)
    os.symlink(os.path.join(RELEASES, rid), tmp, dir_fd=root_fd)
    os.rename(tmp, CURRENT, src_dir_fd=root_fd, dst_dir_fd=root_fd)


def trigger(root_fd: int, user: dict | None, pull: bool) -> None:
    """The customer's ``reload.touch``: a regular file of its own (made again if it is anything else);
    ``pull``: give it an mtime second after its last (uWSGI compares whole seconds, strictly)."""
    try:
        st = os.stat(RELOAD_FILE, dir_fd=root_fd, follow_symlinks=False)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink > 1 or (user is not None and st.st_uid != user["uid"]):
            os.unlink(RELOAD_FILE, dir_fd=root_fd)
            raise FileNotFoundError
    except FileNotFoundError:
        fd = os.open(RELOAD_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o640, dir_fd=root_fd)
        try:
            if user is not None:
                os.fchown(fd, user["uid"], user["gid"])
            st = os.fstat(fd)
        finally:
            os.close(fd)
    if pull:
        later = max(int(time.time()), int(st.st_mtime) + 1)
        os.utime(RELOAD_FILE, (later, later), dir_fd=root_fd, follow_symlinks=False)


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
    user = account(req.get("user"), req.get("account_rule"))
    procs = cgroup_procs(req.get("cgroup"), req["customer"])
    env = environment(req.get("env") or {}, user, req.get("workdir"), req.get("venv"))
    work = exec_in(req["argv"], env, req.get("workdir"))
    ttys = [fd for fd in (0, 1, 2) if os.isatty(fd)]
    if user is not None and ttys:
        return on_own_terminal(user, procs, work, ttys)
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the command's (same terminal)
    try:
        return as_customer(user, procs, work)
    finally:
        signal.signal(signal.SIGINT, old)


def on_own_terminal(user: dict, procs: list[str], work, ttys: list[int]) -> int:
    """Run ``work()`` as the customer on a terminal of its own, relayed to ours (what sudo's ``use_pty`` does).

    Our terminal is the operator's, whose shell is root's: a customer's command on it could push
    input into it (``TIOCSTI``) that root's shell reads as typed once we return, or leave a daemon
    that does so, or reads what the operator types, later. Here the command leads a new session on
    a new pseudo-terminal (its stdin, stdout and stderr where ours are terminals); we copy our input
    to it and its output to ours until the command exits, then close it: what it left behind holds
    a dead terminal.
    """
    import fcntl
    import pty
    import select
    import termios
    import tty

    master, slave = pty.openpty()

    def copy_size(*_args) -> None:
        try:
            fcntl.ioctl(master, termios.TIOCSWINSZ, fcntl.ioctl(ttys[0], termios.TIOCGWINSZ, bytes(8)))
        except OSError:
            pass

    def forward(signum: int, _frame) -> None:
        try:
            os.killpg(pid, signum)  # the command leads its own process group
        except OSError:
            pass

    copy_size()
    if 0 in ttys:
        termios.tcsetattr(slave, termios.TCSANOW, termios.tcgetattr(0))
    def take_terminal() -> None:
        os.close(master)
        os.setsid()
        fcntl.ioctl(slave, termios.TIOCSCTTY, 0)
        for fd in ttys:
            os.dup2(slave, fd)
        os.close(slave)

    pid = os.fork()
    if pid == 0:
        be_customer(user, procs, work, take_terminal)
    os.close(slave)
    out = 1 if 1 in ttys else 2
    handlers = {sig: signal.signal(sig, handler) for sig, handler in
                ((signal.SIGINT, forward), (signal.SIGTERM, forward), (signal.SIGWINCH, copy_size))}
    saved = termios.tcgetattr(0) if 0 in ttys else None
    if saved is not None:
        tty.setraw(0, termios.TCSANOW)  # keys (Ctrl-C included) go to the command's terminal as typed
    done, status = 0, 0
    reading = saved is not None
    try:
        while True:
            ready, _, _ = select.select([master] + ([0] if reading else []), [], [], 0.2)
            if master in ready and not _relay(master, out):
                break  # every holder of its terminal closed it
            if 0 in ready and not _relay(0, master):
                reading = False
            done, status = os.waitpid(pid, os.WNOHANG | os.WUNTRACED)
            if done and os.WIFSTOPPED(status):
                done = 0
                os.killpg(pid, signal.SIGCONT)  # Ctrl-Z: nobody here could resume it
            elif done:
                until = time.monotonic() + 1.0  # what it wrote last; a daemon it left is not waited for
                while time.monotonic() < until and select.select([master], [], [], 0.2)[0] and _relay(master, out):
                    pass
                break
    finally:
        if saved is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, saved)
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        os.close(master)
    if not done:
        _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


def _relay(source: int, target: int) -> bool:
    """Copy what ``source`` has to ``target``; False at its end (EOF, or EIO: a terminal nobody holds)."""
    try:
        data = os.read(source, 65536)
    except OSError:
        return False
    if not data:
        return False
    while data:
        data = data[os.write(target, data):]
    return True


# --- releases -----------------------------------------------------------------------------


def requirements_key(release_dir: str, python: str) -> tuple[str | None, str]:
    """(the requirements file, the virtualenv's name): the sha256 of the Python and that file's content."""
    digest = hashlib.sha256(os.path.realpath(python).encode() + b"\0")
    for name in REQUIREMENTS:
        path = os.path.join(release_dir, name)
        if os.path.isfile(path):
            with open(path, "rb") as fh:
                digest.update(name.encode() + b"\0" + fh.read())
            return name, digest.hexdigest()[:16]
    return None, digest.hexdigest()[:16]


def system_pip(python: str, env: dict) -> bool:
    """Whether ``python -m pip`` exists and knows ``--python`` (pip 22.3 and later)."""
    try:
        found = subprocess.run([python, "-m", "pip", "--version"], capture_output=True, text=True, env=env, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    match = re.match(r"pip (\d+)\.(\d+)", found.stdout)
    return found.returncode == 0 and match is not None and (int(match[1]), int(match[2])) >= (22, 3)


def build_venv(req: dict, release_dir: str, env: dict, key: str) -> str:
    """As the customer: the release's virtualenv in ``venvs/<key>`` (root made it empty for the customer, or
    it is a finished one of root's, reused when Python and requirements are the same)."""
    root, python, timeout = req["root"], req["python"], req.get("timeout", 1800)
    spec, _ = requirements_key(release_dir, python)
    venv = os.path.join(root, VENVS, key)
    if os.path.isfile(os.path.join(venv, VENV_DONE)):
        say(f"virtualenv {VENVS}/{key}: reused ({spec or 'no requirements'} unchanged)")
    else:
        say(f"virtualenv {VENVS}/{key}: building from {spec or 'nothing'} with {python}")
        build_env = {**env, "PIP_CACHE_DIR": os.path.join(root, ".cache", "pip"), "PIP_DISABLE_PIP_VERSION_CHECK": "1",
                     "PIP_NO_INPUT": "1", "VIRTUAL_ENV": venv, "PATH": f"{venv}/bin:{STANDARD_PATH}"}
        if system_pip(python, build_env):  # ensurepip costs seconds per virtualenv; the host's pip can install into it
            steps, pip = [f"{python} -m venv --without-pip {venv}"], f"{python} -m pip --python {venv}/bin/python"
        else:
            steps, pip = [f"{python} -m venv {venv}"], f"{venv}/bin/pip"
        if spec == "requirements.txt":
            steps.append(f"{pip} install -q -r requirements.txt")
        elif spec == "pyproject.toml":
            steps.append(f"{pip} install -q .")
        for step in steps:
            if shell(step, build_env, release_dir, timeout) != 0:
                raise AgentError(f"building the virtualenv failed: {step}")
        with open(os.path.join(venv, VENV_DONE), "w", encoding="utf-8") as fh:
            fh.write(f"{spec or ''}\n")
    link = os.path.join(release_dir, VENV_LINK)
    if os.path.lexists(link):
        raise AgentError(f"the code contains {VENV_LINK}; remove it from the source (the release's virtualenv goes there)")
    os.symlink(os.path.join("..", "..", VENVS, key), link)
    return key


def import_check(req: dict, release_dir: str, env: dict) -> str:
    """The command that loads the app the way a worker will (module:callable, or the wsgi file)."""
    wsgi = req["wsgi"]
    file, sep, attr = wsgi.rpartition(":")
    if wsgi.endswith(".py") or (sep and file.endswith(".py")):  # 'app.py' or 'app.py:callable' (values.wsgi_file)
        file, attr = (wsgi, "application") if wsgi.endswith(".py") else (file, attr)
        live = os.path.join(req["root"], CURRENT) + "/"
        path = os.path.join(release_dir, file[len(live):]) if file.startswith(live) else file
        code = f"import runpy; g = runpy.run_path({path!r}); g[{attr!r}]"
    else:
        module, _, attr = wsgi.partition(":")
        code = f"import importlib; getattr(importlib.import_module({module!r}), {attr or 'application'!r})"
    return f"{release_dir}/{VENV_LINK}/bin/python -c \"{code}\""


def hooks(commands: list[str], env: dict, cwd: str, stage: str, timeout: float) -> None:
    for command in commands:
        say(f"{stage}: {command}")
        status = shell(command, env, cwd, timeout)
        if status != 0:
            raise AgentError(f"{stage} hook {command!r} exited {status}")


def new_release_id(root: str, wanted: str) -> str:
    taken = set(list_releases(root))
    rid, n = wanted, 1
    while rid in taken:
        rid, n = f"{wanted}-{n}", n + 1
    return rid


def unpack(rid: str, root: str, python: str):
    """``work`` for the customer's child: unpack stdin into releases/<rid> (root made it the customer's);
    answers the virtualenv's name."""
    def work() -> str:
        release_dir = os.path.join(root, RELEASES, rid)
        tar = subprocess.run(["tar", "-xzf", "-", "-C", release_dir, "--no-same-owner", "--delay-directory-restore"],
                             stdout=sys.stderr)
        if tar.returncode != 0:
            raise AgentError(f"unpacking the code failed (tar exited {tar.returncode})")
        return requirements_key(release_dir, python)[1]
    return work


def prepare_release(req: dict, rid: str, key: str, user: dict | None):
    """``work`` for the customer's child: build the virtualenv (in the directory root made), check, run the hooks."""
    def work() -> int:
        release_dir = os.path.join(req["root"], RELEASES, rid)
        os.chdir(release_dir)
        env = environment(req.get("env") or {}, user, release_dir, os.path.join(release_dir, VENV_LINK))
        build_venv(req, release_dir, env, key)
        timeout = req.get("timeout", 1800)
        hooks(req["hooks"].get("build", []), env, release_dir, "build", timeout)
        say("checking that the app loads")
        if shell(import_check(req, release_dir, env), env, release_dir, timeout) != 0:
            raise AgentError(f"the new release does not load its app ({req['wsgi']}); nothing was switched")
        hooks(req["hooks"].get("before_switch", []), env, release_dir, "before_switch", timeout)
        return 0
    return work


def ask_as_customer(user: dict | None, procs: list[str], work, stdin_fd: int | None = None) -> tuple[int, str]:
    """``as_customer`` for a ``work`` that answers a short string (at most 256 bytes, through a pipe)."""
    read_fd, write_fd = os.pipe()

    def answering() -> int:
        os.close(read_fd)
        os.write(write_fd, str(work()).encode()[:256])
        return 0

    try:
        status = as_customer(user, procs, answering, stdin_fd=stdin_fd, stdout_to_stderr=True)
        os.close(write_fd)
        write_fd = -1
        return status, os.read(read_fd, 256).decode(errors="replace")
    finally:
        os.close(read_fd)
        if write_fd >= 0:
            os.close(write_fd)


def in_root(root: str, *names: str) -> int:
    """A descriptor of ``<root>/<names...>``, each opened ``O_NOFOLLOW`` (root's directories)."""
    fd = open_dir(root)
    for name in names:
        try:
            sub = open_dir(name, fd)
        finally:
            os.close(fd)
        fd = sub
    return fd


def make_build_dirs(root: str, rid: str, key: str, user: dict | None) -> bool:
    """Root makes the customer's build directories: releases/<rid> now, venvs/<key> unless a finished one
    is there (True: it will be built). A half-built or customer-owned virtualenv is removed first."""
    customer = (user["uid"], user["gid"]) if user else (None, -1)
    fd = in_root(root, VENVS)
    try:
        st = os.stat(key, dir_fd=fd, follow_symlinks=False) if venv_finished(fd, key) else None
        if st is not None and (user is None or st.st_uid == 0):
            return False
        remove_entry(fd, key)
        make_dir(fd, key, *customer, 0o700)
        return True
    finally:
        os.close(fd)


def venv_done(root: str, key: str) -> bool:
    fd = in_root(root, VENVS)
    try:
        return venv_finished(fd, key)
    finally:
        os.close(fd)


def seal_in(root: str, parent: str, name: str, user: dict | None, public: tuple[str, ...] = ()) -> int:
    fd = in_root(root, parent, name)
    try:
        return seal(fd, code_ids(user), public)
    finally:
        os.close(fd)


def remove_in(root: str, parent: str, name: str) -> None:
    fd = in_root(root, parent)
    try:
        remove_entry(fd, name)
    finally:
        os.close(fd)


def remove_releases(root: str, doomed: list[str], keep_venvs: bool = False) -> None:
    """As root, in root's directories: delete these releases, then every virtualenv no remaining release uses."""
    fd = in_root(root, RELEASES)
    try:
        for rid in doomed:
            if RELEASE_ID.fullmatch(rid):
                remove_entry(fd, rid)
        used = set()
        for rid in os.listdir(fd):
            if not stat.S_ISDIR(os.stat(rid, dir_fd=fd, follow_symlinks=False).st_mode):
                remove_entry(fd, rid)  # a link from an older layout: unlinked, never followed
                continue
            try:
                sub = open_dir(rid, fd)
            except OSError:
                continue
            try:
                used.add(os.path.basename(os.readlink(VENV_LINK, dir_fd=sub)))
            except OSError:
                pass
            finally:
                os.close(sub)
    finally:
        os.close(fd)
    if keep_venvs:
        return
    fd = in_root(root, VENVS)
    try:
        for name in os.listdir(fd):
            if name not in used:
                remove_entry(fd, name)
    finally:
        os.close(fd)


def wait_for_reload(req: dict, before: dict[int, bool], timeout: float) -> str | None:
    """Wait until every worker is new and accepting (a chain reload is one worker at a time); why not, or None."""
    stats, deadline = req["stats"], time.monotonic() + timeout
    wanted = max(len(before), 1)
    seen: dict[int, bool] = {}
    while time.monotonic() < deadline:
        seen = workers(read_socket(stats))
        if len(seen) >= wanted and all(seen.values()) and not set(seen) & set(before):
            return None
        time.sleep(0.2)
    return f"the app did not reload within {timeout:.0f} s (workers now: {sorted(seen) or 'none'}; see `hostctl logs`)"


def start_if_down(req: dict, before: dict[int, bool]) -> None:
    """First release: the vassal could not start without code; the Emperor may have blacklisted it. Start it now."""
    if before:
        return
    data = read_socket(req["emperor_stats"])
    if data and isinstance(data.get("pid"), int) and any(isinstance(b, dict) and b.get("id") == os.path.basename(req["vassal"])
                                                        for b in data.get("blacklist") or []):
        os.kill(data["pid"], signal.SIGURG)  # the Emperor forgets its blacklist (uWSGI core/emperor.c)
    if os.path.isfile(req["vassal"]) and not os.path.islink(req["vassal"]):
        bump_mtime(req["vassal"])
    read_socket(req["emperor_stats"])


def health(req: dict) -> str | None:
    """The app's probe through nginx after a switch; why it failed, or None."""
    p = req.get("probe")
    if not p:
        return None
    deadline, got = time.monotonic() + p["timeout"], "no answer"
    while True:
        try:
            conn = http.client.HTTPConnection(p["address"], p["port"], timeout=max(0.5, min(p["timeout"], 10)))
            try:
                conn.request("GET", p["path"], headers={"Host": p["host"], "User-Agent": "hostctl-release"})
                response = conn.getresponse()  # the status only: the body is the app's to make never-ending
                got = f"HTTP {response.status}"
                if response.status == p["status"]:
                    return None
            finally:
                conn.close()
        except (OSError, http.client.HTTPException) as exc:
            got = f"{type(exc).__name__}: {exc}"
        if time.monotonic() > deadline:
            return f"health check GET {p['path']} (Host: {p['host']}) answered {got}, expected HTTP {p['status']}"
        time.sleep(0.2)


def go_live(req: dict, user: dict | None, procs: list[str], rid: str, previous: str | None) -> str | None:
    """Switch to ``rid``, wait for the reload, check health; on failure switch back to ``previous``. Why it failed, or None."""
    root, timeout = req["root"], req.get("reload_timeout", 120)
    before = workers(read_socket(req["stats"]))
    switch_to(root, rid, user)
    start_if_down(req, before)
    why = wait_for_reload(req, before, timeout) or health(req)
    if why is None:
        return None
    say(f"{rid}: {why}")
    if previous:
        say(f"switching back to {previous}")
        now = workers(read_socket(req["stats"]))
        switch_to(root, previous, user)
        start_if_down(req, now)
        back = wait_for_reload(req, now, timeout)
        if back:
            say(f"after switching back: {back}")
    return why


def switch_to(root: str, rid: str, user: dict | None) -> None:
    """As root, in root's app root: point ``current`` at releases/<rid> and pull the customer's trigger."""
    fd = open_dir(root)
    try:
        point_current(fd, rid)
        trigger(fd, user, pull=True)
    finally:
        os.close(fd)


def nginx_gid(req: dict) -> int:
    """nginx's group on this host (for ``data/``), or -1."""
    import grp

    try:
        return grp.getgrnam(req["group"]).gr_gid if req.get("group") else -1
    except KeyError:
        return -1


def release_release(req: dict, stdin) -> tuple[int, dict]:
    """Unpack, build, check and run the hooks as the customer; seal; then switch, reload, health check, prune."""
    user = account(req.get("user"), req.get("account_rule"))
    procs = cgroup_procs(req.get("cgroup"), req["customer"])
    root = req["root"]
    if not os.path.isfile(req["vassal"]):
        raise AgentError(f"{req['vassal']} does not exist: the app is not applied on this host (run `hostctl apply` "
                         "or `hostctl deploy` first; an app with enabled: false is not released)")
    public = public_paths(root, req.get("static") or [])
    ensure_root(root, user, nginx_gid(req), public)
    previous = read_current(root)
    rid = new_release_id(root, req["release_id"])
    say(f"release {rid} of {req['customer']}/{req['app']} in {root}/{RELEASES}/{rid}" + (f" (live now: {previous})" if previous else ""))
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # feeds the code to the customer's tar; exits when done
        os.close(read_fd)
        try:
            while chunk := stdin.read(65536):
                os.write(write_fd, chunk)
        except OSError:
            pass
        os._exit(0)
    os.close(write_fd)
    fd = in_root(root, RELEASES)
    try:
        make_dir(fd, rid, *((user["uid"], user["gid"]) if user else (None, -1)), 0o700)
    finally:
        os.close(fd)
    status, key = ask_as_customer(user, procs, unpack(rid, root, req["python"]), stdin_fd=read_fd)
    wait_status(pid)
    why = None
    if status == 0 and not re.fullmatch(r"[0-9a-f]{16}", key):
        status, why = 1, f"the build answered {key[:40]!r} as its virtualenv's name"
    if status == 0:
        fresh = make_build_dirs(root, rid, key, user)
        status = as_customer(user, procs, prepare_release(req, rid, key, user), stdout_to_stderr=True)
        if fresh and venv_done(root, key):  # kept for the next release even if this one failed
            try:
                seal_in(root, VENVS, key, user)
            except AgentError as exc:
                remove_in(root, VENVS, key)
                status, why = 1, f"its virtualenv cannot be sealed: {exc}"
    if status == 0:
        try:
            count = seal_in(root, RELEASES, rid, user, public)
            say(f"sealed {RELEASES}/{rid} ({count} entries): root's, read-only for the app")
        except AgentError as exc:
            status, why = 1, f"it cannot be sealed: {exc}"
    if status != 0:
        remove_in(root, RELEASES, rid)
        return 1, {"error": f"release {rid} was not switched to: {why or 'the build failed (see above)'}; "
                            f"{previous or 'nothing'} stays live", "release": rid, "live": previous}
    why = go_live(req, user, procs, rid, previous)
    if why:
        remove_releases(root, [rid], keep_venvs=True)
        return 1, {"error": f"release {rid} was switched back: {why}; {previous or 'nothing'} is live",
                   "release": rid, "live": previous}
    say(f"{rid} is live")
    after = req["hooks"].get("after_switch", [])
    failed = None
    if after:
        live = os.path.join(root, CURRENT)
        env = environment(req.get("env") or {}, user, live, os.path.join(live, VENV_LINK))
        failed = as_customer(user, procs, lambda: hooks(after, env, live, "after_switch", req.get("timeout", 1800)) or 0,
                             stdout_to_stderr=True)
    pruned = prune(req, keep=req.get("keep", 5))
    result = {"release": rid, "live": rid, "previous": previous, "pruned": pruned}
    if failed:
        result["error"] = f"{rid} is live, but an after_switch hook failed (see above)"
        return 1, result
    return 0, result


def prune(req: dict, keep: int) -> list[str]:
    root = req["root"]
    ids = list_releases(root)
    live = read_current(root)
    kept = set(ids[-keep:]) | ({live} if live else set())
    doomed = [rid for rid in ids if rid not in kept]
    remove_releases(root, doomed)
    return doomed


def release_list(req: dict, stdin) -> tuple[int, dict]:
    return 0, {"releases": list_releases(req["root"]), "live": read_current(req["root"])}


def release_rollback(req: dict, stdin) -> tuple[int, dict]:
    """Switch back to release ``to`` (default: the newest one older than the live one), with reload and health check."""
    user = account(req.get("user"), req.get("account_rule"))
    procs = cgroup_procs(req.get("cgroup"), req["customer"])
    root = req["root"]
    ensure_root(root, user, nginx_gid(req), public_paths(root, req.get("static") or []))
    ids, live = list_releases(root), read_current(root)
    target = req.get("to")
    if not target:
        older = [rid for rid in ids if live is None or rid < live]
        if not older:
            raise AgentError(f"there is no release older than {live or 'nothing'} to roll back to (releases: {', '.join(ids) or 'none'})")
        target = older[-1]
    if target not in ids:
        raise AgentError(f"there is no release {target!r} (releases: {', '.join(ids) or 'none'})")
    if target == live:
        return 0, {"live": live, "previous": live}
    why = go_live(req, user, procs, target, live)
    if why:
        return 1, {"error": f"rolling back to {target} failed and was undone: {why}; {live} is live", "live": live}
    return 0, {"live": target, "previous": live}


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
