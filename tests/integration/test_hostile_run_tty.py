"""Hostile tenant: `hostctl run` never hands the operator's terminal to a customer's command.

The operator runs ``hostctl run acme -- python manage.py migrate`` as root in its own
shell; the command is the customer's code. Given the operator's terminal (its
controlling terminal, same session), the command can push characters into that
terminal's input with ``ioctl(TIOCSTI)``: when hostctl returns, root's shell reads
them as if the operator had typed them. A daemon the command leaves behind could do
the same later, or read what the operator types next.

The test is the operator: hostctl runs on a pseudo-terminal that is its controlling
terminal. The customer's command tries TIOCSTI on its stdin, stdout and stderr and
leaves a daemon that tries again after hostctl returned. Nothing may arrive in the
operator's input; the command's output must still reach the operator's terminal, and
its input must still come from it (an interactive command keeps working).
"""

from __future__ import annotations

import fcntl
import os
import pwd
import secrets
import select
import subprocess
import sys
import termios
import time
from typing import Iterator

import psutil
import pytest

from hostctl.engine.core import users
from tests.harness import REPO, Sandbox

pytestmark = pytest.mark.integration

MARK = "PWNED-" + secrets.token_hex(4)

INJECT = r"""
import fcntl, os, sys, termios, time
def inject(text):
    done = []
    for fd in (0, 1, 2):
        try:
            for c in text.encode():
                fcntl.ioctl(fd, termios.TIOCSTI, bytes([c]))
            done.append(fd)
        except OSError as exc:
            pass
    return done
print("customer command: TIOCSTI accepted on", inject("echo %(mark)s-now\n"), flush=True)
line = sys.stdin.readline().strip()
print("customer command read:", line, flush=True)
if os.fork() == 0:  # a daemon left behind, still holding the terminal, in the same session
    time.sleep(1.5)
    inject("echo %(mark)s-later\n")
    os._exit(0)
"""


@pytest.fixture
def box() -> Iterator[tuple[Sandbox, str]]:
    if os.geteuid() != 0:
        pytest.skip("needs root (runs a command as another Unix user, as the operator would)")
    sandbox = Sandbox({"isolation": {"users": "per-customer"}})
    user = f"hct{secrets.token_hex(3)}"
    try:
        users.create([user], None, 20000, 29999)
        yield sandbox, user
    finally:
        uid = pwd.getpwnam(user).pw_uid
        left = lambda: [p for p in psutil.process_iter(["uids"]) if p.info["uids"] and p.info["uids"].real == uid]
        for _ in range(100):  # the command's daemon ends by itself after its late try
            if not left():
                break
            time.sleep(0.1)
        subprocess.run(["userdel", user], capture_output=True)
        sandbox.cleanup()


def _read_all(fd: int, seconds: float) -> bytes:
    out = b""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
    return out


def test_run_cannot_type_into_the_operators_terminal(box: tuple[Sandbox, str]) -> None:
    sandbox, user = box
    assert pwd.getpwnam(user).pw_uid >= 20000
    sandbox.write_customer("tty", {"user": user, "apps": {"web": sandbox.echo_app(["tty.example"], chdir=str(sandbox.apps))}})
    master, slave = os.openpty()  # the operator's terminal: master is the screen and keyboard, slave its shell's side

    def operators_session() -> None:
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen([sys.executable, "-m", "hostctl", "-i", str(sandbox.inventory), "run", "tty", "--",
                             "/usr/bin/python3", "-c", INJECT % {"mark": MARK}],
                            stdin=slave, stdout=slave, stderr=slave, preexec_fn=operators_session, cwd=REPO)
    try:
        os.write(master, b"typed by the operator\n")
        proc.wait(timeout=120)
        screen = _read_all(master, 3.0).decode(errors="replace")  # the daemon's late try included
        assert proc.returncode == 0, screen
        # the operator's shell would now read its terminal: what is waiting there?
        os.set_blocking(slave, False)
        try:
            pending = os.read(slave, 65536).decode(errors="replace")
        except BlockingIOError:
            pending = ""
        assert MARK not in pending, (f"the customer's command typed into root's terminal (root's shell would run it): "
                                     f"{pending!r}; hostctl run's output: {screen!r}")
        assert "customer command read: typed by the operator" in screen, screen  # interactive use still works
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
        os.close(slave)
