"""Atomic writes: whole files only, and an mtime second strictly after the replaced file's."""

from __future__ import annotations

import os
import time
from pathlib import Path

from hostctl.engine import fsops


def test_rewrite_within_the_same_second_gets_a_later_mtime_second(tmp_path: Path) -> None:
    path = tmp_path / "acme_web.ini"
    seconds = []
    for i in range(4):  # four writes in well under a second
        fsops.write_atomic(str(path), f"v{i}\n".encode(), 0o640)
        seconds.append(int(os.stat(path).st_mtime))
    assert seconds == sorted(set(seconds)), seconds  # strictly increasing whole seconds
    assert path.read_text() == "v3\n"
    assert oct(os.stat(path).st_mode & 0o777) == "0o640"


def test_first_write_keeps_the_current_time(tmp_path: Path) -> None:
    path = tmp_path / "new.ini"
    before = time.time()
    fsops.write_atomic(str(path), b"x", 0o644)
    assert before - 1 <= os.stat(path).st_mtime <= time.time() + 1


def test_temp_names_match_no_vassal_or_nginx_glob(tmp_path: Path) -> None:
    name = os.path.basename(fsops.temp_name(str(tmp_path / "acme_web.ini")))
    assert name.startswith(".") and not name.endswith((".ini", ".xml", ".yml", ".yaml", ".js", ".json", ".conf"))


def test_leftover_temp_files_are_cleaned_and_nothing_else(tmp_path: Path) -> None:
    (tmp_path / ".acme_web.ini.hostctl-tmp-123").write_text("half")
    (tmp_path / "acme_web.ini").write_text("whole")
    (tmp_path / ".operator-notes").write_text("not ours")
    removed = fsops.clean_temp_files(str(tmp_path))
    assert [os.path.basename(p) for p in removed] == [".acme_web.ini.hostctl-tmp-123"]
    assert sorted(os.listdir(tmp_path)) == [".operator-notes", "acme_web.ini"]


def test_blocked_ancestor_finds_a_directory_nginx_cannot_enter() -> None:
    import shutil
    import tempfile

    from hostctl.cli.serve import blocked_ancestor

    base = Path(tempfile.mkdtemp(dir="/tmp"))  # /tmp is 1777, so only our own dirs decide
    try:
        os.chmod(base, 0o755)
        (base / "open" / "run").mkdir(parents=True, mode=0o755)
        (base / "private" / "run").mkdir(parents=True)
        os.chmod(base / "private", 0o700)
        (base / "group" / "run").mkdir(parents=True)
        os.chmod(base / "group", 0o750)
        if os.geteuid() == 0:
            os.chown(base / "group", -1, 65534)
        nogroup = 65534
        assert blocked_ancestor(str(base / "open" / "run" / "x.sock"), nogroup) is None
        assert blocked_ancestor(str(base / "private" / "run" / "x.sock"), nogroup) == str(base / "private")
        if os.geteuid() == 0:  # group-searchable is enough when the group is nginx's
            assert blocked_ancestor(str(base / "group" / "run" / "x.sock"), nogroup) is None
            assert blocked_ancestor(str(base / "group" / "run" / "x.sock"), 12345) == str(base / "group")
    finally:
        shutil.rmtree(base)
