"""What `hostctl status --host` runs on a server: its stats sockets, /proc and cgroups, read there.

The whole source of this module is sent over SSH and run with the server's
``python3 -c``, so it imports only the standard library (no psutil, no
hostctl; nothing needs installing on the server). It reads a JSON request on
stdin (socket paths, master-less app ids, the CPU interval) and prints one JSON
object, which ``status_remote`` turns into the same ``Observed`` that the local
collector produces, so the rows, states and health check are decided by the
same pure code. Like the local collector, every read may fail on its own and
is then reported, never raised. `limits --host` and `certs --host` ask the same
probe for a customer's cgroup figures or for certificate files (``answer``).
"""

import json
import os
import re
import socket
import stat
import struct
import sys
import time

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
UNLIMITED = 1 << 62  # cgroup v1's "no limit" is a number near 2**63
NOT_RUNNING = ("no such file or directory", "connection refused")  # nothing listens: the Emperor is not running
MARK = "@@hostctl-status@@"  # the answer's JSON follows it (SSH mixes in anything written to stderr)


# A vassal's stats socket is in its customer's directory, so whatever answers there may be the
# customer's own program: every read is bounded in total time, bytes and JSON nesting.
MAX_STATS_BYTES = 4 << 20  # a vassal's stats: 256 workers with 8 cores each are ~80 KB
EMPEROR_STATS_BYTES = 64 << 20  # the Emperor's (a root socket in run_dir): ~450 bytes per vassal
MAX_JSON_DEPTH = 32  # uWSGI's stats nest 4 levels (workers -> cores -> ...)


def read_socket(address, timeout=1.0, max_bytes=MAX_STATS_BYTES):
    """Everything a stats server sends on one connection: (bytes, None), or (None, why not).

    ``address`` is a UNIX socket path, or host:port for TCP. ``emperor.py`` reads through it too.
    ``timeout`` bounds the whole exchange (connect to last byte), not each read, so a server that
    trickles bytes cannot hold the caller; more than ``max_bytes`` is refused.
    """
    if ":" in address and not address.startswith("/"):
        host, _, port = address.rpartition(":")
        family, target = socket.AF_INET, (host, int(port))
    else:
        family, target = socket.AF_UNIX, address
    chunks, total = [], 0
    deadline = time.monotonic() + timeout
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            refused = unix_socket_refused(address) if family == socket.AF_UNIX else None
            if refused:
                return None, refused
            sock.connect(target)
            refused = peer_refused(sock, address) if family == socket.AF_UNIX else None
            if refused:
                return None, refused
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise socket.timeout()
                sock.settimeout(left)
                chunk = sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
                total += len(chunk)
                if total > max_bytes:
                    return None, "sent more than %d bytes (a stats server sends one small JSON object)" % max_bytes
    except OSError as exc:
        if isinstance(exc, socket.timeout):
            return None, "did not answer within %g s" % timeout
        return None, (exc.strerror or str(exc)).lower()
    return b"".join(chunks), None


def unix_socket_refused(path):
    """Why root will not connect to ``path`` (None: it may). A vassal's stats socket lies in its
    customer's own directory, where the customer could put a symlink to any socket on the host:
    only a socket itself is connected to, never a symlink or anything else."""
    try:
        mode = os.lstat(path).st_mode
    except OSError as exc:
        return (exc.strerror or str(exc)).lower()
    if stat.S_ISLNK(mode):
        return "is a symlink (never followed)"
    if not stat.S_ISSOCK(mode):
        return "is not a socket"
    return None


def peer_refused(sock, path):
    """Why the server behind ``sock`` is not trusted (None: it is): it must run as the owner of the
    socket's directory (a customer's uWSGI master listens after dropping to the customer's user;
    the Emperor, as root, in root's run_dir). Closes the race between the check above and connect."""
    try:
        _pid, uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
        owner = os.stat(os.path.dirname(path) or ".").st_uid
    except OSError as exc:
        return (exc.strerror or str(exc)).lower()
    if uid != owner:
        return "is served by uid %d, not by the owner of its directory (uid %d)" % (uid, owner)
    return None


_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_BRACKETS = bytes.maketrans(b"[{]}", b"(())")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def json_depth(data, limit=MAX_JSON_DEPTH):
    """How deeply ``data`` (JSON text as bytes) nests arrays and objects (strings skipped), counted up to
    ``limit + 1`` without parsing: innermost pairs are removed once per level, each pass at C speed."""
    brackets = _JSON_STRING.sub(b"", data).translate(_BRACKETS, _NOT_BRACKETS)
    depth = 0
    while brackets and depth <= limit:
        inner = brackets.replace(b"()", b"")
        if inner == brackets:
            break  # unbalanced: json.loads will refuse it
        brackets, depth = inner, depth + 1
    return depth


def parse_stats(data, check_depth=True):
    """(stats, None) or (None, why): a JSON object nested at most ``MAX_JSON_DEPTH`` deep.

    ``check_depth``: count the nesting before parsing (~25 ms per MB); json.loads alone would
    recurse into it (a RecursionError, caught too, comes only past ~1,000 levels)."""
    if not data:
        return None, "answered nothing"
    if check_depth and json_depth(data) > MAX_JSON_DEPTH:
        return None, "answered JSON nested deeper than %d levels" % MAX_JSON_DEPTH
    try:
        parsed = json.loads(data.decode("utf-8", "replace"))
    except (ValueError, RecursionError):
        return None, "answered something that is not JSON"
    return (parsed, None) if isinstance(parsed, dict) else (None, "answered something that is not a JSON object")


def fetch(address, timeout=1.0, max_bytes=MAX_STATS_BYTES, check_depth=True):
    """A uWSGI stats server's JSON: (stats, None), or (None, why it could not be read)."""
    data, error = read_socket(address, timeout, max_bytes)
    if error is not None:
        return None, error
    return parse_stats(data, check_depth)


def fetch_emperor(address, timeout=1.0):
    """The Emperor's stats: its socket is root's (in run_dir), and it lists every vassal, so it may be large."""
    return fetch(address, timeout, EMPEROR_STATS_BYTES, check_depth=False)


def children_map(proc="/proc"):
    children = {}
    for name in os.listdir(proc):
        if not name.isdigit():
            continue
        try:
            with open(os.path.join(proc, name, "stat"), "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(name))
    return children


def sample(pid, children, proc="/proc"):
    """RSS bytes and CPU seconds of ``pid``'s tree, as ``status_collect.ProcSample`` fields."""
    rss, cpu, denied, todo, started = {}, {}, 0, [pid], None
    while todo:
        member = todo.pop()
        todo.extend(children.get(member, ()))
        try:
            with open(os.path.join(proc, str(member), "stat"), "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
            with open(os.path.join(proc, str(member), "statm"), "rb") as fh:
                resident = int(fh.read().split()[1])
        except PermissionError:
            denied += 1
            continue
        except (OSError, IndexError, ValueError):
            continue  # vanished
        if fields[0] == b"Z":
            continue
        rss[member] = resident * PAGE
        cpu[member] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime
        if member == pid:
            started = boot_time(proc) + int(fields[19]) / CLOCK_TICKS  # starttime: ticks after boot
    return {"at": time.monotonic(), "rss": rss, "cpu": cpu, "denied": denied, "started": started}


def boot_time(proc="/proc"):
    """When the machine booted, epoch seconds (``btime`` in /proc/stat)."""
    with open(os.path.join(proc, "stat")) as fh:
        for line in fh:
            if line.startswith("btime "):
                return int(line.split()[1])
    return 0


def _int_file(path):
    with open(path) as fh:
        text = fh.read().strip()
    return UNLIMITED if text == "max" else int(text)


def _counter(path, name):
    """``name N`` from a flat-keyed cgroup file, or None."""
    try:
        with open(path) as fh:
            for line in fh:
                key, _, value = line.partition(" ")
                if key == name:
                    return int(value)
    except (OSError, ValueError):
        return None
    return None


def memory_cgroup(pid, proc="/proc", v1="/sys/fs/cgroup/memory", v2="/sys/fs/cgroup"):
    """{path, usage, limit} of the memory cgroup ``pid`` is in (v1 memory controller, else v2), or None."""
    with open(os.path.join(proc, str(pid), "cgroup")) as fh:
        lines = fh.read().splitlines()
    for line in lines:
        _hier, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            base, files = os.path.join(v1, path.lstrip("/")), ("memory.usage_in_bytes", "memory.limit_in_bytes")
            events = "memory.oom_control"
        elif controllers == "":
            base, files = os.path.join(v2, path.lstrip("/")), ("memory.current", "memory.max")
            events = "memory.events"
        else:
            continue
        try:
            usage, limit = (_int_file(os.path.join(base, f)) for f in files)
        except (OSError, ValueError):
            continue
        return {"path": base, "usage": usage, "limit": None if limit >= UNLIMITED else limit,
                "oom_kills": _counter(os.path.join(base, events), "oom_kill")}
    return None


def master_pids(app_ids, emperor, vassals):
    """Each app's uWSGI master pid: from the Emperor's view (vassal file ``<id>.ini``), else the vassal's own stats."""
    by_file = {}
    for vassal in (emperor or {}).get("vassals") or []:
        if isinstance(vassal, dict):
            by_file[vassal.get("id")] = vassal.get("pid")
    masters = {}
    for app_id in app_ids:
        pid = by_file.get(app_id + ".ini")
        if not (isinstance(pid, int) and pid > 0):
            pid = (vassals.get(app_id) or {}).get("pid")
        if isinstance(pid, int) and not isinstance(pid, bool) and pid > 0:
            masters[app_id] = pid
    return masters


MANIFEST_BYTES = 64 << 20  # root's manifest in state_dir: ~200 bytes per file hostctl wrote
SERVER_BLOCK_BYTES = 1 << 20  # root's server block in nginx_dir, for the held customer's domains


def _read_bounded(path, limit):
    with open(path, "rb") as fh:
        return fh.read(limit)


def held_apps(held):
    """The live apps of customers held back by their own broken inventory file, from this server's manifest
    (the control side cannot say which apps they have, nor on which host they are). Per customer found here:
    its Unix user (from its runtime record) and per app its server block's text (for its domains), plus notes.
    ``held`` names the customers and this server's paths, with ``{customer}`` and ``{app}`` to fill in.
    Manifest, records and server blocks are root's files, written by hostctl; reads are bounded all the same."""
    wanted = set(held.get("customers") or ())
    if not wanted:
        return {}, []
    try:
        files = json.loads(_read_bounded(held["manifest"], MANIFEST_BYTES)).get("files", {})
    except FileNotFoundError:
        return {}, []
    except (OSError, ValueError, AttributeError) as exc:
        return {}, ["the manifest %s: %s" % (held["manifest"], (getattr(exc, "strerror", None) or str(exc)).lower())]
    found = {}
    for entry in files.values():
        if isinstance(entry, dict) and entry.get("customer") in wanted and entry.get("kind") in ("vassal", "nginx"):
            found.setdefault(entry["customer"], set()).add(str(entry.get("app")))
    out = {}
    for customer, names in sorted(found.items()):
        def fill(template, app=""):
            return template.replace("{customer}", customer).replace("{app}", app)
        user = None
        try:
            user = json.loads(_read_bounded(fill(held["record"]), MANIFEST_BYTES)).get("user")
        except (OSError, ValueError, AttributeError):
            pass
        apps = {}
        for app in sorted(names):
            try:
                apps[app] = _read_bounded(fill(held["server_block"], app), SERVER_BLOCK_BYTES).decode("utf-8", "replace")
            except OSError:
                apps[app] = ""
        out[customer] = {"user": user if isinstance(user, str) else None, "apps": apps}
    return out, []


def collect(request):
    """Everything ``status_remote`` needs, read on this server."""
    timeout = request.get("timeout", 1.0)
    emperor, emperor_error = fetch_emperor(request["emperor_stats"], timeout)
    held, notes = held_apps(request.get("held") or {})
    request = dict(request, apps=dict(request["apps"]), customers=dict(request["customers"]))
    for customer, found in held.items():  # read like every other app of this host
        for app in found["apps"]:
            app_id = request["held"]["id"].replace("{customer}", customer).replace("{app}", app)
            request["apps"][app_id] = request["held"]["stats"].replace("{customer}", customer).replace("{app}", app)
            request["customers"][app_id] = customer
    vassals, stats_errors = {}, {}
    for app_id, address in request["apps"].items():
        stats, error = fetch(address, timeout)
        if stats is not None:
            vassals[app_id] = stats
        else:
            stats_errors[app_id] = "stats socket %s: %s" % (address, error)
    masters = master_pids(request["apps"], emperor, vassals)
    children = children_map()
    before = {app_id: sample(pid, children) for app_id, pid in masters.items()}
    if masters and request.get("cpu_interval", 0) > 0:
        time.sleep(request["cpu_interval"])
        children = children_map()
    after = {app_id: sample(pid, children) for app_id, pid in masters.items()}
    # A customer's cgroup: the one its vassal is in, unless the Emperor is in it too (then it is shared).
    cgroups = {}
    shared = None
    if isinstance((emperor or {}).get("pid"), int):
        try:
            shared = memory_cgroup(emperor["pid"])
        except (OSError, ValueError):
            shared = None
    for app_id, pid in masters.items():
        customer = request["customers"][app_id]
        if customer in cgroups:
            continue
        try:
            found = memory_cgroup(pid)
        except (OSError, ValueError) as exc:
            notes.append("the cgroup of pid %d: %s" % (pid, getattr(exc, "strerror", None) or exc))
            continue
        if found is not None and (shared is None or found["path"] != shared["path"]):
            cgroups[customer] = {"usage": found["usage"], "limit": found["limit"], "oom_kills": found["oom_kills"]}
    quarantined = {}
    try:
        with open(request["quarantine"]) as fh:
            record = json.load(fh).get("customers", {})
        quarantined = {name: "%s: %s" % (item.get("file"), item.get("reason")) for name, item in record.items()}
    except FileNotFoundError:
        pass
    except (OSError, ValueError, AttributeError) as exc:
        notes.append("the quarantine record %s: %s" % (request["quarantine"], (getattr(exc, "strerror", None) or str(exc)).lower()))
    emperor_started = None
    if isinstance((emperor or {}).get("pid"), int):
        emperor_started = sample(emperor["pid"], {})["started"]
    return {"now": time.time(), "emperor": emperor, "emperor_error": emperor_error, "emperor_started": emperor_started,
            "vassals": vassals,
            "stats_errors": stats_errors, "before": before, "after": after, "cgroups": cgroups,
            "quarantined": quarantined, "notes": notes, "held": held}


# --- `limits --host` and `certs --host`: the same probe, asked for cgroup figures or certificate files ---


def _value(path):
    """A cgroup file's first line, or None when it does not exist (or is not readable)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(65536).decode("ascii", "replace").strip()
    except OSError:
        return None


def _number(text):
    """A cgroup figure: None for 'max', v1's "no limit" or a missing file."""
    if text is None or text == "max":
        return None
    value = int(text)
    return None if value >= UNLIMITED else value


def _flat(text, key):
    for line in (text or "").splitlines():
        name, _, value = line.partition(" ")
        if name == key:
            return int(value)
    return None


def cgroup_usage(version, memory, cpu=None, pids=None):
    """A customer's live cgroup figures ({path, memory, memory_limit, oom_kills, pids, pids_limit, cpu}),
    or None when its cgroup does not exist. ``memory``, ``cpu``, ``pids``: its directory per v1 controller
    (on v2 all three are the one directory). `hostctl limits` reads through this here and on a server."""
    if version not in ("v1", "v2") or not memory or not os.path.isdir(memory):
        return None
    if version == "v1":
        quota = _value(os.path.join(cpu, "cpu.cfs_quota_us")) if cpu else None
        period = _value(os.path.join(cpu, "cpu.cfs_period_us")) if cpu else None
        share = int(quota) / int(period) if quota and period and int(quota) > 0 else None
        return {"path": memory, "memory": _number(_value(os.path.join(memory, "memory.usage_in_bytes"))),
                "memory_limit": _number(_value(os.path.join(memory, "memory.limit_in_bytes"))),
                "oom_kills": _flat(_value(os.path.join(memory, "memory.oom_control")), "oom_kill"),
                "pids": _number(_value(os.path.join(pids, "pids.current"))) if pids else None,
                "pids_limit": _number(_value(os.path.join(pids, "pids.max"))) if pids else None, "cpu": share}
    cpu_max = (_value(os.path.join(memory, "cpu.max")) or "max").split()
    share = int(cpu_max[0]) / int(cpu_max[1]) if len(cpu_max) == 2 and cpu_max[0] != "max" else None
    return {"path": memory, "memory": _number(_value(os.path.join(memory, "memory.current"))),
            "memory_limit": _number(_value(os.path.join(memory, "memory.max"))),
            "oom_kills": _flat(_value(os.path.join(memory, "memory.events")), "oom_kill"),
            "pids": _number(_value(os.path.join(memory, "pids.current"))),
            "pids_limit": _number(_value(os.path.join(memory, "pids.max"))), "cpu": share}


PEM_MAX = 1 << 20  # as engine/certs.py: a chain of a dozen certificates is ~20 KB


def read_small_file(path, limit=PEM_MAX):
    """{"data": text} for a regular file of at most ``limit`` bytes, {"missing": True}, or {"error": why}.

    A certificate or key may sit where a customer can write (as ``engine/boundedio.read_regular``
    says): a FIFO, a device or a huge file is refused without blocking; symlinks are followed
    (Let's Encrypt's live/ directory is made of them)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError:
        return {"missing": True}
    except OSError as exc:
        return {"error": (exc.strerror or str(exc)).lower()}
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return {"error": "is not a regular file"}
        if st.st_size > limit:
            return {"error": "is larger than %d bytes (%d)" % (limit, st.st_size)}
        data = os.read(fd, limit + 1)
        if len(data) > limit:
            return {"error": "is larger than %d bytes" % limit}
        return {"data": data.decode("latin-1")}
    except OSError as exc:
        return {"error": (exc.strerror or str(exc)).lower()}
    finally:
        os.close(fd)


def answer(request):
    """What the request asks for: the status (the default), cgroup figures, or small files."""
    kind = request.get("kind", "status")
    if request.get("only_held"):  # `hostctl logs` of a held-back customer: where are its apps?
        found, notes = held_apps(request["held"])
        return {"held": found, "notes": notes}
    if kind == "limits":
        return {"usage": {name: cgroup_usage(**dirs) for name, dirs in request["cgroups"].items()}}
    if kind == "files":
        return {"files": {path: read_small_file(path) for path in request["files"]}}
    return collect(request)


if __name__ == "__main__":
    sys.stdout.write(MARK + json.dumps(answer(json.load(sys.stdin))))
