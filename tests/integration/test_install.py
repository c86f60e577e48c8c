"""The production install, as the README describes it: the sdist and the wheel built from it
(`make dist`), the wheel installed into a fresh virtualenv made with /usr/bin/python3 (in a
temporary directory standing for /opt/hostctl), and `hostctl init --production` and `validate`
run from there. The systemd units name the stable path, never the virtualenv that ran init."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hostctl.targets import scaffold

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def test_wheel_installs_into_a_fresh_virtualenv_and_runs_init_production_and_validate(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    built = subprocess.run([sys.executable, "-m", "build", "-o", str(dist), str(REPO)], capture_output=True, text=True, timeout=600)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    [wheel] = dist.glob("hostctl-*-py3-none-any.whl")
    [sdist] = dist.glob("hostctl-*.tar.gz")
    venv = tmp_path / "opt" / "hostctl"
    subprocess.run(["/usr/bin/python3", "-m", "venv", str(venv)], check=True, timeout=120)
    pip = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(wheel)], capture_output=True, text=True, timeout=900)
    assert pip.returncode == 0, f"pip install of the wheel failed (needs the package registry):\n{pip.stderr[-3000:]}"

    # Nothing from the checkout: a clean environment, another working directory.
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8"}
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import hostctl; print(hostctl.__file__)"],
                           capture_output=True, text=True, env=env, cwd=tmp_path, check=True).stdout.strip()
    assert where.startswith(str(venv)), where
    hostctl = str(venv / "bin" / "hostctl")
    inv = tmp_path / "etc-hostctl" / "inventory"
    init = subprocess.run([hostctl, "init", "--production", "-i", str(inv)], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert init.returncode == 0, init.stderr
    assert f"the systemd units run {scaffold.PRODUCTION_BIN}" in init.stderr or os.path.exists(scaffold.PRODUCTION_BIN)
    validate = subprocess.run([hostctl, "-i", str(inv), "validate"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert validate.returncode == 0 and validate.stdout.startswith("OK: 0 customers"), validate.stdout + validate.stderr

    # Every unit that runs hostctl names the stable path, and no failure is hidden (ExecStart*=-).
    units = {p.name: p.read_text() for p in (inv / "system").iterdir() if p.suffix in (".service", ".timer")}
    assert set(units) >= {"hostctl-emperor.service", "hostctl-restore.service", "hostctl-certs.service",
                          "hostctl-certs.timer", "hostctl-logrotate.service", "hostctl-logrotate.timer"}
    commands = [line for text in units.values() for line in text.splitlines() if re.match(r"Exec\w*=", line)]
    hostctl_commands = [c for c in commands if "hostctl -i" in c]
    assert f"ExecStart={scaffold.PRODUCTION_BIN} restore --state-dir /var/lib/hostctl" in commands, commands
    assert len(hostctl_commands) == 2 and all(c.split("=", 1)[1].startswith(f"{scaffold.PRODUCTION_BIN} -i {inv} ")
                                              for c in hostctl_commands), hostctl_commands
    assert not [c for c in commands if "=-" in c or str(tmp_path / "opt") in c], commands
    assert "Wants=hostctl-restore.service" in units["hostctl-emperor.service"]

    # The sdist carries what a checkout has: templates, the fabfile, the tests and the Makefile.
    listing = subprocess.run(["tar", "tzf", str(sdist)], capture_output=True, text=True, check=True).stdout.split()
    top = {name.split("/", 2)[1] for name in listing if name.count("/") >= 1}
    assert {"hostctl", "templates", "tests", "Makefile", "pyproject.toml", "README.md", "scripts"} <= top, top
    assert any(name.endswith("hostctl/fabfile/fabfile.py") for name in listing)
