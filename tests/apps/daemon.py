"""A test app whose /daemon request leaves a daemon behind (double fork, setsid, ignores every catchable signal)."""
import json
import os
import signal
import time


def _daemon() -> int:
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        os.setsid()
        if os.fork() == 0:
            os.write(w, str(os.getpid()).encode())
            os.closerange(3, 4096)  # let go of uWSGI's sockets, as a real daemon does
            for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGUSR1):
                signal.signal(sig, signal.SIG_IGN)
            while True:
                time.sleep(3600)
        os._exit(0)
    os.close(w)
    os.waitpid(child, 0)
    pid = int(os.read(r, 32))
    os.close(r)
    return pid


def application(environ, start_response):
    body = {"customer": os.environ.get("CUSTOMER"), "pid": os.getpid(), "uid": os.getuid()}
    if environ.get("PATH_INFO") == "/daemon":
        body["daemon"] = _daemon()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(body).encode()]
