"""A test app for isolation and limits: who and where it runs, what it may read or connect to, and a memory hog.

/            uid, gid, pid, the master's pid (ppid) and /proc/self/cgroup
/read?path=  try to read a file        /list?path=  try to list a directory
/connect?path=  try to connect to a unix socket
/alloc?mb=N  touch N MB of memory (far beyond the customer's limit gets the worker OOM-killed)
/fork?n=N    fork up to N children (stopped by pids.max), then kill and reap them all
/burn?cpu=S  spin until this worker has used S seconds of CPU
"""
import json
import os
import signal
import socket
import time
from urllib.parse import parse_qs


def _try(action):
    try:
        action()
        return {"ok": True}
    except OSError as exc:
        return {"ok": False, "errno": exc.errno, "error": exc.strerror}


def _connect(path):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(path)


def _read(path):
    with open(path, "rb") as fh:
        fh.read(1)


def _fork(n):
    children, error = [], None
    try:
        for _ in range(n):
            pid = os.fork()
            if pid == 0:
                time.sleep(30)
                os._exit(0)
            children.append(pid)
    except OSError as exc:
        error = exc.errno
    for pid in children:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    return {"forked": len(children), "errno": error}


def _burn(seconds):
    start = time.process_time()
    while time.process_time() - start < seconds:
        pass
    return {"cpu_seconds": time.process_time() - start}


def application(environ, start_response):
    query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
    route = environ.get("PATH_INFO", "/")
    with open("/proc/self/cgroup") as fh:
        cgroup = fh.read()
    body = {"customer": os.environ.get("CUSTOMER"), "pid": os.getpid(), "ppid": os.getppid(),
            "uid": os.getuid(), "gid": os.getgid(), "cgroup": cgroup}
    if route == "/read":
        body["result"] = _try(lambda: _read(query["path"]))
    elif route == "/list":
        body["result"] = _try(lambda: os.listdir(query["path"]))
    elif route == "/connect":
        body["result"] = _try(lambda: _connect(query["path"]))
    elif route == "/fork":
        body["result"] = _fork(int(query["n"]))
    elif route == "/burn":
        body["result"] = _burn(float(query["cpu"]))
    elif route == "/alloc":
        hog = b"x" * (int(query["mb"]) << 20)  # written, so every page is really used
        body["allocated"] = len(hog)
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(body).encode()]
