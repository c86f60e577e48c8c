"""validate catches a virtualenv made by a Python other than the one uWSGI's plugin embeds."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hostctl.engine.checks import virtualenv_problem

DEBIAN_PYTHON = "/usr/bin/python3"


def make_venv(python: str, path: Path) -> Path:
    subprocess.run([python, "-m", "venv", "--without-pip", str(path)], check=True)
    return path


@pytest.mark.skipif(not Path(DEBIAN_PYTHON).exists(), reason="needs Debian's /usr/bin/python3")
def test_virtualenv_from_debian_python_is_accepted(tmp_path: Path) -> None:
    assert virtualenv_problem(str(make_venv(DEBIAN_PYTHON, tmp_path / "venv")), DEBIAN_PYTHON) is None


def test_virtualenv_from_another_python_is_refused(tmp_path: Path) -> None:
    other = shutil.which("python3")
    if other is None or Path(other).resolve().parent == Path(DEBIAN_PYTHON).resolve().parent:
        other = sys.executable  # e.g. the test venv's interpreter
    venv = make_venv(other, tmp_path / "venv")
    cfg = (venv / "pyvenv.cfg").read_text()
    if f"home = {Path(DEBIAN_PYTHON).resolve().parent}" in cfg:
        pytest.skip("only Debian's Python is available here")
    problem = virtualenv_problem(str(venv), DEBIAN_PYTHON)
    assert problem is not None and "recreate it with `/usr/bin/python3 -m venv" in problem


def test_missing_or_bogus_virtualenv(tmp_path: Path) -> None:
    assert "does not exist" in virtualenv_problem(str(tmp_path / "nope"), DEBIAN_PYTHON)
    (tmp_path / "empty").mkdir()
    assert "is not a virtualenv" in virtualenv_problem(str(tmp_path / "empty"), DEBIAN_PYTHON)
