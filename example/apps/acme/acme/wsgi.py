"""ACME's WSGI app."""
import os


def application(environ, start_response):
    body = f"{os.environ.get('GREETING', 'hello')} (host {environ.get('HTTP_HOST')}, pid {os.getpid()})\n"
    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
    return [body.encode()]
