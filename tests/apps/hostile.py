"""A hostile customer's app: ordinary answers, plus what a customer can do to root's readers and to nginx.

/              its customer, uid and pid as JSON
/stream        200, then a body that never ends (a probe that reads bodies never returns)
/hang?s=N      answer after N seconds (holds an nginx connection and an upstream connection meanwhile)
/fds           RLIMIT_NOFILE and how many files this worker can open before EMFILE
/tmp           what this worker sees in /tmp and $TMPDIR, and whether it can write there
"""
import json
import os
import resource
import tempfile
import time
from urllib.parse import parse_qs


def _fds():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    opened, error = [], None
    try:
        while len(opened) < 100_000:
            opened.append(os.open("/dev/null", os.O_RDONLY))
    except OSError as exc:
        error = exc.errno
    for fd in opened:
        os.close(fd)
    return {"soft": soft, "hard": hard, "opened": len(opened), "errno": error}


def _tmp():
    tmpdir = os.environ.get("TMPDIR")
    out = {"TMPDIR": tmpdir, "gettempdir": tempfile.gettempdir(), "tmp_entries": sorted(os.listdir("/tmp"))[:50]}
    with tempfile.NamedTemporaryFile(prefix="hostile-") as fh:
        out["made"] = fh.name
    return out


def application(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    query = parse_qs(environ.get("QUERY_STRING", ""))
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "application/octet-stream")])

        def endless():
            while True:
                yield b"z" * 65536
        return endless()
    if path == "/hang":
        time.sleep(float(query.get("s", ["30"])[0]))
    body = {"customer": os.environ.get("CUSTOMER"), "uid": os.getuid(), "pid": os.getpid()}
    if path == "/fds":
        body["fds"] = _fds()
    if path == "/tmp":
        body["tmp"] = _tmp()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(body).encode()]
