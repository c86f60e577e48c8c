"""appagent.shell, which runs a customer's release hooks and virtualenv steps: no terminal of the operator's.

A hook is the customer's code. Run by `hostctl release` from the operator's terminal, it must not
inherit that terminal (a daemon it leaves behind could read what the operator types next, or write
escape sequences to it): its stdin is /dev/null and its output reaches the operator through a pipe the
agent relays with control characters escaped. A daemon holding that pipe does not hold the release.
"""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUN = ("import sys; from hostctl.engine import appagent; "
       "sys.exit(appagent.shell(sys.argv[1], {'PATH': '/usr/bin:/bin'}, sys.argv[2], 120))")


def _on_a_terminal(command: str, cwd: Path) -> tuple[int, bytes]:
    """Run appagent.shell(command) in a child whose stdin and stderr are a terminal; its status and what the terminal got."""
    master, slave = pty.openpty()
    child = subprocess.Popen([sys.executable, "-c", RUN, command, str(cwd)], stdin=slave, stdout=subprocess.DEVNULL,
                             stderr=slave, cwd=ROOT, start_new_session=True)
    os.close(slave)
    seen = b""
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 1.0)
            if ready:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: no process has the terminal open any more
                    chunk = b""
                seen += chunk
                if chunk:
                    continue
            if child.poll() is not None and not ready:
                break
            if child.poll() is not None and ready and not chunk:
                break
        return child.wait(timeout=120), seen
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        os.close(master)


@pytest.fixture
def daemons(tmp_path: Path):
    yield tmp_path
    for pidfile in tmp_path.glob("*.pid"):
        try:
            os.kill(int(pidfile.read_text().split()[0]), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass


def test_a_hook_gets_no_terminal_of_the_operators_and_its_output_is_relayed(daemons: Path) -> None:
    status, seen = _on_a_terminal('for f in 0 1 2; do readlink /proc/$$/fd/$f; done > fds.txt; echo built-ok', daemons)
    assert status == 0
    fds = (daemons / "fds.txt").read_text().split()
    assert len(fds) == 3
    assert not [fd for fd in fds if fd.startswith("/dev/pts") or fd.startswith("/dev/tty")], fds
    assert fds[0] == "/dev/null"
    assert b"built-ok" in seen


def test_control_characters_a_hook_prints_reach_the_operator_escaped(daemons: Path) -> None:
    status, seen = _on_a_terminal(r"printf 'title\033]0;pwned\007 bell\007 del\177 end\n'", daemons)
    assert status == 0
    assert b"end" in seen
    for raw in (b"\x1b", b"\x07", b"\x7f"):
        assert raw not in seen, seen
    assert b"\\x1b]0;pwned\\x07" in seen


def test_a_daemon_the_hook_leaves_holding_its_output_does_not_hold_the_step(daemons: Path) -> None:
    # the daemon keeps the hook's stdout and stderr open; the step still ends when the hook's shell does
    status, seen = _on_a_terminal("sleep 300 & echo $! > daemon.pid; echo started", daemons)
    assert status == 0
    assert b"started" in seen
    pid = int((daemons / "daemon.pid").read_text())
    os.kill(pid, 0)  # still alive: the step did not wait for it to go away


def test_a_failing_hook_reports_its_status(daemons: Path) -> None:
    status, _ = _on_a_terminal("echo no >&2; exit 3", daemons)
    assert status == 3
