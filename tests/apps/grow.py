"""A test app that keeps 1 MB per request (so its RSS grows) and logs each request's path."""
import sys

KEPT = []


def application(environ, start_response):
    KEPT.append(bytearray(1 << 20))
    print(f"grow: {environ.get('PATH_INFO')} request {len(KEPT)}", file=sys.stderr, flush=True)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"kept {len(KEPT)} MB\n".encode()]
