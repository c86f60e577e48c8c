"""Heavy libraries stay out of commands that do not need them (start-up time is part of every apply)."""

from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner

from hostctl.cli.main import cli

HEAVY = ("paramiko", "fabric", "invoke", "cryptography", "acme")


def test_apply_and_plan_do_not_import_ssh_or_tls_libraries() -> None:
    code = ("import sys; import hostctl.cli.main, hostctl.engine.apply, hostctl.engine.pipeline; "
            f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert loaded == ""


def test_lazy_commands_are_listed_and_load_when_used() -> None:
    runner = CliRunner()
    listing = runner.invoke(cli, ["--help"]).output
    for name in ("deploy", "bootstrap", "certs", "apply"):
        assert f"  {name} " in listing
    result = runner.invoke(cli, ["deploy", "--help"])
    assert result.exit_code == 0 and "Usage: cli deploy" in result.output
