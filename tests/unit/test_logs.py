"""logs: choosing the files, the last N lines, and following across uWSGI's rotation (real files in tmp_path)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hostctl.errors import HostctlError
from hostctl.inventory import loader as inventory
from hostctl.status import logs


@pytest.fixture
def inv(tmp_path: Path) -> inventory.Inventory:
    (tmp_path / "customers").mkdir()
    (tmp_path / "hostctl.yaml").write_text("log_dir: log\n")
    (tmp_path / "customers" / "acme.yaml").write_text(
        "apps:\n  web:\n    domains: [acme.example]\n    wsgi: a:b\n  api:\n    domains: [api.acme.example]\n    wsgi: a:b\n")
    return inventory.load(tmp_path)


def test_log_files(inv: inventory.Inventory, tmp_path: Path) -> None:
    root = str(tmp_path / "log")
    log = tmp_path / "log" / "acme"
    assert logs.log_files(inv, "acme", "web") == [logs.LogFile("acme/web", str(log / "uwsgi" / "web.log"), root)]
    assert [f.label for f in logs.log_files(inv, "acme")] == ["acme/web", "acme/api"]
    assert logs.log_files(inv, "acme", "api", nginx=True) == [
        logs.LogFile("acme/api access", str(log / "api.access.log"), root), logs.LogFile("acme/api error", str(log / "api.error.log"), root)]
    with pytest.raises(HostctlError, match=r"no such customer: 'globex' \(known: acme\)"):
        logs.log_files(inv, "globex")
    with pytest.raises(HostctlError, match=r"customer 'acme' has no app 'shop' \(its apps: web, api\)"):
        logs.log_files(inv, "acme", "shop")


@pytest.mark.parametrize("n", [0, 1, 3, 5000, 20000])
def test_last_lines_reads_backwards_across_blocks(tmp_path: Path, n: int) -> None:
    path = tmp_path / "x.log"
    lines = [f"line {i} " + "x" * (i % 50) + "\n" for i in range(10000)]
    path.write_text("".join(lines))
    with open(path, "rb") as fh:
        got, end = logs.last_lines(fh, n)
    assert [g.decode() for g in got] == (lines[-n:] if n else [])
    assert end == path.stat().st_size


def test_last_lines_keeps_an_unterminated_last_line(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    path.write_bytes(b"a\nb\nhalf")
    with open(path, "rb") as fh:
        assert logs.last_lines(fh, 2)[0] == [b"b\n", b"half"]


def test_follower_survives_rename_rotation_and_truncation(tmp_path: Path) -> None:
    path = tmp_path / "web.log"
    path.write_bytes(b"old 1\n")
    fh = open(path, "rb")
    follower = logs.Follower(str(path), fh, os.path.getsize(path))
    assert follower.read() == b""
    with open(path, "ab") as out:
        out.write(b"old 2\n")
    # uWSGI's log-maxsize: the file is renamed, more is written to the old inode, then a new file appears.
    os.rename(path, tmp_path / "web.log.1700000000")
    with open(tmp_path / "web.log.1700000000", "ab") as out:
        out.write(b"old 3\n")
    assert follower.read() == b"old 2\nold 3\n"  # renamed away, nothing new yet: keeps reading the old one
    path.write_bytes(b"new 1\n")
    assert follower.read() == b"new 1\n"
    with open(path, "ab") as out:
        out.write(b"new 2\n")
    assert follower.read() == b"new 2\n"
    path.write_bytes(b"t\n")  # truncated in place (copytruncate)
    assert follower.read() == b"t\n"
    follower.close()


def test_follower_waits_for_a_file_that_does_not_exist_yet(tmp_path: Path) -> None:
    follower = logs.Follower(str(tmp_path / "later.log"))
    assert follower.read() == b""
    (tmp_path / "later.log").write_bytes(b"first\n")
    assert follower.read() == b"first\n"
    follower.close()


def test_show_and_follow_prefix_lines_of_several_files(tmp_path: Path) -> None:
    a, b = tmp_path / "a.log", tmp_path / "b.log"
    a.write_bytes(b"a1\na2\n")
    files = [logs.LogFile("acme/web", str(a)), logs.LogFile("acme/api", str(b))]
    out: list[str] = []
    followers, missing = logs.show(files, 1, out.append)
    assert "".join(out) == f"==> acme/web: {a} <==\na2\n"
    assert missing == [f"{b} does not exist yet (the app has not started or logged anything)"]
    out.clear()
    a.write_bytes(b"a1\na2\na3\npart")
    b.write_bytes(b"b1\n")
    rounds = iter([False, True])
    logs.follow(files, followers, out.append, stop=lambda: next(rounds), interval=0)
    assert "".join(out) == "acme/web: a3\nacme/api: b1\n"  # the partial line waits for its newline
    assert all(f.fh is None for f in followers)


@pytest.mark.parametrize("follow, want", [
    (False, "tail -n 5 -- /var/log/hostctl/acme/web.log '/odd path/x.log'"),
    (True, "tail -F -n 5 -- /var/log/hostctl/acme/web.log '/odd path/x.log' & read _; kill $! 2>/dev/null"),
])
def test_remote_tail_command(follow: bool, want: str) -> None:
    from hostctl.status import logs_remote

    assert logs_remote.command(["/var/log/hostctl/acme/web.log", "/odd path/x.log"], 5, follow) == want


def test_remote_logs_run_as_the_customer_on_per_customer_hosts() -> None:
    """tail follows symlinks; as the customer's own user, a planted one reaches nothing root could read."""
    from hostctl.status import logs_remote

    assert logs_remote.command(["/var/log/hostctl/acme/uwsgi/web.log"], 5, False, "hc-acme") == \
        "runuser -u hc-acme -- tail -n 5 -- /var/log/hostctl/acme/uwsgi/web.log"
    assert logs_remote.command(["/x.log"], 0, True, "hc-acme").startswith("runuser -u hc-acme -- tail -F -n 0 -- /x.log & read _;")


def test_for_terminal_escapes_every_control_character_but_newline_and_tab() -> None:
    assert logs.for_terminal("a\tb\n") == "a\tb\n"
    assert logs.for_terminal("\x1b]0;t\x07\r\x00\x7f\u009b é€") == "\\x1b]0;t\\x07\\x0d\\x00\\x7f\\x9b é€"
    assert all(not logs.CONTROL.search(logs.for_terminal(chr(i))) for i in range(0x200))
