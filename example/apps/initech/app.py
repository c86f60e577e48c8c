"""Initech's WSGI app: a single file."""
import os


def application(environ, start_response):
    body = f"{os.environ.get('GREETING', 'hello')} (pid {os.getpid()})\n"
    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
    return [body.encode()]
