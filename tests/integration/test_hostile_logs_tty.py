"""Hostile tenant: `hostctl logs` never sends a customer's control characters to the operator's terminal.

What an app writes to its log is the customer's (or, when the app logs request paths,
any visitor's: ``GET /%1b]0;...`` decodes to an escape sequence). The operator reads it
with `hostctl logs` as root in a terminal; raw escape sequences there retitle the window,
clear the screen and draw a fake prompt, hide lines with carriage returns, or, in some
terminal emulators, write the clipboard or answer a query into the terminal's input.
`journalctl` shows such bytes escaped; so must `hostctl logs`, when its output is a
terminal (piped to a file, the bytes stay as they are).

The customer writes such lines into its own log as its Unix user; `hostctl logs` runs
on a pseudo-terminal; no control character but newline and tab may arrive there, and
the text must still be readable (escaped, not dropped).
"""

from __future__ import annotations

import os
import secrets
import select
import subprocess
import sys
import time
from typing import Iterator

import pytest

from tests.harness import REPO, Sandbox
from tests.hostile import as_user

pytestmark = pytest.mark.integration

WRITE_LOG = r"""
import sys
with open(sys.argv[1], "ab") as fh:
    fh.write(b"plain line\n")
    fh.write(b"title \x1b]0;pwned by the customer\x07 and \x1b[2J\x1b[H cleared screen\n")
    fh.write(b"hidden by CR: rm -rf /\r" + b"harmless-looking\n")
    fh.write("C1 CSI \u009b31m red, BEL \x07, DEL \x7f end\n".encode())
"""


@pytest.fixture
def box() -> Iterator[tuple[Sandbox, str]]:
    if os.geteuid() != 0:
        pytest.skip("needs root (writes the log as the customer's Unix user)")
    sandbox = Sandbox({"isolation": {"users": "per-customer"}})
    user = f"hcl{secrets.token_hex(3)}"
    try:
        yield sandbox, user
    finally:
        subprocess.run(["userdel", user], capture_output=True)
        sandbox.cleanup()


def _screen(master: int, proc: subprocess.Popen) -> bytes:
    out = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the slave side is closed
                break
            out += chunk
        elif proc.poll() is not None:
            break
    return out


def test_logs_on_a_terminal_show_control_characters_escaped(box: tuple[Sandbox, str]) -> None:
    sandbox, user = box
    sandbox.write_customer("acme", {"user": user, "apps": {"web": sandbox.echo_app(["acme.test"])}})
    sandbox.hostctl("apply", "--create-users")  # makes log_dir/acme/uwsgi, the customer's own
    log = sandbox.path("log") / "acme" / "uwsgi" / "web.log"
    written = as_user(user, WRITE_LOG, str(log))
    assert written.returncode == 0, written.stderr
    master, slave = os.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "hostctl", "-i", str(sandbox.inventory), "logs", "acme", "-n", "10"],
                            stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, cwd=REPO)
    os.close(slave)
    try:
        screen = _screen(master, proc)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    text = screen.decode("utf-8", errors="replace")
    assert proc.returncode == 0, text
    # the terminal's own line discipline turns "\n" into "\r\n": those are the only CRs allowed
    controls = sorted({hex(ord(c)) for c in text.replace("\r\n", "\n")
                       if (ord(c) < 0x20 and c not in "\n\t") or 0x7F <= ord(c) <= 0x9F})
    assert not controls, f"hostctl logs sent the customer's control characters {controls} to root's terminal: {text!r}"
    for readable in ("plain line", "pwned by the customer", "cleared screen", "rm -rf /", "harmless-looking", "red", "end"):
        assert readable in text, (readable, text)

    # piped (not a terminal), the bytes are the log's own
    piped = sandbox.hostctl("logs", "acme", "-n", "10")
    assert "\x1b]0;pwned by the customer\x07" in piped.stdout, piped.stdout
