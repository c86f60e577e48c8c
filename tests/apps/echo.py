"""A test app: answers with its customer, worker pid and a few env values as JSON."""
import json
import os


def application(environ, start_response):
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
