"""A test app that burns CPU until the file named in the query string exists (at most 30 s)."""
import os
import time


def application(environ, start_response):
    flag = environ.get("QUERY_STRING", "")
    deadline = time.monotonic() + 30
    while flag and not os.path.exists(flag) and time.monotonic() < deadline:
        sum(range(10000))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"done\n"]
