"""Ship the engine to a server: a zip of ``hostctl/engine/core`` that the server's ``python3`` runs (as Ansible ships modules).

``engine_zip`` builds the zip from the installed package at runtime and caches
it by the content hash of its sources (in memory and in
``$XDG_CACHE_HOME/hostctl``). ``command`` is the one shell command a deploy
runs on a server: a small Python stub reads the zip from stdin, keeps it in
``state_dir/engine/`` (``hostctl-engine-<hash>.pyz``, and
``hostctl-engine.pyz``, which the boot-time ``restore`` unit runs), then runs
the engine on the job that follows on stdin, printing its JSON answer. So a
deploy stays one SSH round trip.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shlex
import zipfile
from functools import lru_cache
from pathlib import Path

ENGINE_DIR = Path(__file__).resolve().parents[1] / "engine" / "core"
NAME = "hostctl-engine.pyz"
MAIN = "import sys\nfrom hostctl.engine.core.__main__ import main\nsys.exit(main(sys.argv[1:]))\n"
PACKAGE_INIT = '"""hostctl, as shipped to a server: only the engine."""\n'
PYTHON = "/usr/bin/python3"

# Reads "<zip length>\n", the zip, then hands the rest of stdin (the job) to the engine.
STUB = r"""
import os, sys
state, digest, command = sys.argv[1], sys.argv[2], sys.argv[3:]
inp = sys.stdin.buffer
size = int(inp.readline())
data = inp.read(size)
home = os.path.join(state, "engine")
os.makedirs(home, mode=0o700, exist_ok=True)
path = os.path.join(home, "hostctl-engine-%s.pyz" % digest)
def put(target):
    tmp = target + ".tmp-%d" % os.getpid()
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, target)
if size and not os.path.exists(path):
    put(path)
    for name in os.listdir(home):
        if name.startswith("hostctl-engine-") and name.endswith(".pyz") and name != os.path.basename(path):
            os.unlink(os.path.join(home, name))
    put(os.path.join(home, "hostctl-engine.pyz"))
sys.path.insert(0, path)
from hostctl.engine.core.__main__ import main
sys.exit(main(command))
"""


def _sources() -> list[tuple[str, bytes]]:
    return [(f"hostctl/engine/core/{p.name}", p.read_bytes()) for p in sorted(ENGINE_DIR.glob("*.py"))]


def source_hash() -> str:
    h = hashlib.sha256()
    for name, data in _sources():
        h.update(f"\0{name}\0".encode())
        h.update(data)
    return h.hexdigest()[:32]


@lru_cache(maxsize=4)
def _build(digest: str) -> bytes:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hostctl" / f"engine-{digest}.pyz"
    try:
        return cache.read_bytes()
    except OSError:
        pass
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        entries = [("__main__.py", MAIN.encode()), ("hostctl/__init__.py", PACKAGE_INIT.encode()),
                   ("hostctl/engine/__init__.py", PACKAGE_INIT.encode()), *_sources()]
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)
    data = buffer.getvalue()
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".tmp-{os.getpid()}")
        tmp.write_bytes(data)
        os.replace(tmp, cache)
    except OSError:
        pass  # a cache that cannot be written only costs the build
    return data


def engine_zip() -> tuple[bytes, str]:
    """The engine as a runnable zip, and its content hash."""
    digest = source_hash()
    return _build(digest), digest


def command(state_dir: str, args: list[str], python: str = PYTHON) -> str:
    """The shell command that runs the engine (``args``: e.g. ["apply"]) from the zip sent on stdin."""
    _, digest = engine_zip()
    q = shlex.quote
    return (f"umask 022 && mkdir -p -m 700 -- {q(state_dir)} && exec {q(python)} -c {q(STUB)} "
            f"{q(state_dir)} {digest} {' '.join(q(a) for a in args)}")


def payload(job: dict) -> bytes:
    """What ``command`` reads on stdin: the zip, then the job."""
    data, _ = engine_zip()
    return f"{len(data)}\n".encode() + data + json.dumps(job, separators=(",", ":")).encode()


def installed_path(state_dir: str) -> str:
    """Where a server keeps the engine it was last deployed with (the ``restore`` unit runs it)."""
    return os.path.join(state_dir, "engine", NAME)


def answer(output: str) -> dict:
    """The engine's JSON answer: the last line of its output that is a JSON object."""
    for line in reversed(output.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                data = json.loads(line)
            except ValueError:
                continue
            if isinstance(data, dict):
                return data
    return {}
