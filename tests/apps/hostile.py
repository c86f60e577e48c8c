"""A hostile customer's app: ordinary answers, plus what a customer can do to root's readers and to nginx.

/              its customer, uid and pid as JSON
/stream        200, then a body that never ends (a probe that reads bodies never returns)
/hang?s=N      answer after N seconds (holds an nginx connection and an upstream connection meanwhile)
/fds           RLIMIT_NOFILE and how many files this worker can open before EMFILE
/tmp?write=N   writes /tmp/N, then lists /tmp as this worker sees it
/alloc?mb=N    touch N MB of memory, then free it
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


def _tmp(write):
    if write:
        with open(os.path.join("/tmp", os.path.basename(write)), "w") as fh:
            fh.write("written by %d\n" % os.getuid())
    return {"entries": sorted(os.listdir("/tmp")), "gettempdir": tempfile.gettempdir()}


def _alloc(mb):
    block = bytearray(mb << 20)
    for i in range(0, len(block), 4096):
        block[i] = 1
    return {"touched_mb": mb}


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
        body["tmp"] = _tmp(query.get("write", [""])[0])
    if path == "/alloc":
        body["alloc"] = _alloc(int(query.get("mb", ["1"])[0]))
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(body).encode()]
