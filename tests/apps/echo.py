"""A test app: answers with its customer, worker pid and a few env values as JSON."""
import json
import os
import sys


def application(environ, start_response):
    # What an app prints reaches its uWSGI log (vassals log no per-request lines of their own).
    print(f"echo: {environ.get('REQUEST_METHOD')} {environ.get('PATH_INFO')}", file=sys.stderr, flush=True)
    body = {
        "customer": os.environ.get("CUSTOMER"),
        "greeting": os.environ.get("GREETING"),
        "pid": os.getpid(),
        "uid": os.getuid(),
        "host": environ.get("HTTP_HOST"),
        "env": {k: v for k, v in os.environ.items() if k.startswith("T_")},
    }
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(body).encode()]
