"""envfile: KEY=VALUE secrets, checked like inline env values, from a file nobody else can read."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hostctl.inventory import envfile
from hostctl.targets import deploycache


def test_parse_takes_values_literally_and_skips_comments() -> None:
    assert envfile.parse("# c\n\nA=1\nB = x=y \"q\"\nC=\n") == {"A": "1", "B": " x=y \"q\"", "C": ""}


@pytest.mark.parametrize("text, why", [
    ("A\n", "line 1: not KEY=VALUE"),
    ("1A=x\n", "line 1: '1A' is not a valid environment variable name"),
    ("A=ok\nA=again\n", "line 2: A is set twice"),
    ("A=hunter2 %(x)\n", "line 1 (A): the value contains '%('"),
    ("A=hunter2\r\n", "line 1 (A): the value contains a control character"),
    ("A=hunter2 \n", "line 1 (A): the value ends in white space"),
])
def test_parse_refuses_what_inline_env_refuses_without_quoting_the_value(text: str, why: str) -> None:
    with pytest.raises(envfile.EnvFileError) as err:
        envfile.parse(text)
    assert why in str(err.value) and "hunter2" not in str(err.value)


def _secret(tmp_path: Path, text: str = "A=1\n", mode: int = 0o600) -> Path:
    path = tmp_path / "s.env"
    path.write_text(text)
    os.chmod(path, mode)
    return path


def test_read_accepts_only_a_private_regular_file_of_the_running_user(tmp_path: Path) -> None:
    euid = os.geteuid()
    assert envfile.read(str(_secret(tmp_path)), euid) == {"A": "1"}
    with pytest.raises(envfile.EnvFileError, match="mode 0604: group or others may access it"):
        envfile.read(str(_secret(tmp_path, mode=0o604)), euid)
    with pytest.raises(envfile.EnvFileError, match=f"owned by uid {euid}, not by uid {euid + 1}"):
        envfile.read(str(_secret(tmp_path)), euid + 1)
    os.symlink(_secret(tmp_path), tmp_path / "link.env")
    with pytest.raises(envfile.EnvFileError, match="is a symlink"):
        envfile.read(str(tmp_path / "link.env"), euid)
    os.mkfifo(tmp_path / "fifo.env", 0o600)
    with pytest.raises(envfile.EnvFileError, match="is not a regular file"):  # O_NONBLOCK: no writer needed
        envfile.read(str(tmp_path / "fifo.env"), euid)
    big = _secret(tmp_path, "A=" + "x" * envfile.MAX_BYTES + "\n")
    with pytest.raises(envfile.EnvFileError, match="bytes; at most"):
        envfile.read(str(big), euid)


def test_the_deploy_cache_sees_a_changed_env_file(tmp_path: Path) -> None:
    (tmp_path / "customers").mkdir()
    (tmp_path / "hostctl.yaml").write_text("{}\n")
    (tmp_path / "customers" / "acme.yaml").write_text("env_file: secrets/acme.env\napps: {}\n")
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "acme.env").write_text("A=1\n")
    before = deploycache.inputs(str(tmp_path)).customers["customers/acme.yaml"]
    (tmp_path / "secrets" / "acme.env").write_text("A=2\n")
    assert deploycache.inputs(str(tmp_path)).customers["customers/acme.yaml"] != before
