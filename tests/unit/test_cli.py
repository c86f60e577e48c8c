"""The command line: exit codes, messages and what each command writes (CliRunner, no servers)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from hostctl.cli import cli, main


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def inv(tmp_path: Path, runner: CliRunner) -> Path:
    root = tmp_path / "inv"
    result = runner.invoke(cli, ["-i", str(root), "init"])
    assert result.exit_code == 0, result.output
    settings = yaml.safe_load((root / "hostctl.yaml").read_text())
    settings["isolation"] = {"users": "invoker"}
    (root / "hostctl.yaml").write_text(yaml.safe_dump(settings))
    return root


def run(runner: CliRunner, root: Path, *args: str) -> tuple[int, str, str]:
    result = runner.invoke(cli, ["-i", str(root), *args])
    return result.exit_code, result.stdout, result.stderr


def test_init_creates_inventory_and_system_files(inv: Path, runner: CliRunner) -> None:
    assert (inv / "customers").is_dir()
    service = (inv / "system" / "hostctl-emperor.service").read_text()
    assert f"--ini /etc/hostctl/emperor.ini" in service
    assert f"emperor = {inv}/vassals" in (inv / "system" / "emperor.ini").read_text()
    assert f"include {inv}/nginx/*.conf;" in (inv / "system" / "nginx-hostctl.conf").read_text()
    code, _, err = run(runner, inv, "init")
    assert code == 1 and "already exists; not overwriting an inventory" in err


def test_init_production_settings_validate(tmp_path: Path, runner: CliRunner) -> None:
    code, out, err = run(runner, tmp_path / "prod", "init", "--production")
    assert code == 0, err
    text = (tmp_path / "prod" / "hostctl.yaml").read_text()
    assert "reload_command: \"systemctl reload nginx\"" in text and "users: per-customer" in text


def test_add_customer_writes_one_valid_file(inv: Path, runner: CliRunner) -> None:
    code, out, err = run(runner, inv, "add-customer", "acme", "--domain", "acme.example", "--domain", "www.acme.example",
                         "--wsgi", "acme.wsgi:application", "--processes", "3", "--memory", "256M",
                         "--env", "GREETING=hi: there # not a comment", "--env", "EMPTY=")
    assert code == 0, err
    data = yaml.safe_load((inv / "customers" / "acme.yaml").read_text())
    assert data == {"limits": {"memory": "256M"}, "apps": {"web": {
        "domains": ["acme.example", "www.acme.example"], "wsgi": "acme.wsgi:application", "processes": 3,
        "env": {"GREETING": "hi: there # not a comment", "EMPTY": ""}}}}


def test_add_customer_refusals_write_nothing(inv: Path, runner: CliRunner) -> None:
    assert run(runner, inv, "add-customer", "acme", "--domain", "acme.example", "--wsgi", "a:b")[0] == 0
    other = inv / "customers" / "globex.yaml"
    cases = [
        (["acme", "--domain", "x.example", "--wsgi", "a:b"], "customer 'acme' already exists"),
        (["globex", "--domain", "acme.example", "--wsgi", "a:b"], "domain 'acme.example' is already used by customer 'acme' (app 'web')"),
        (["globex", "--domain", "bad domain", "--wsgi", "a:b"], "customers/globex.yaml:5: apps.web.domains[0]: 'bad domain' is not a valid domain name"),
        (["globex", "--domain", "g.example", "--wsgi", "a:b", "--env", "K=line1\nline2"], "contains a control character"),
        (["globex", "--domain", "g.example", "--wsgi", "a:b", "--memory", "lots"], "'lots' is not a valid size"),
        (["Globex", "--domain", "g.example", "--wsgi", "a:b"], "'Globex' is not a valid customer name"),
    ]
    for args, message in cases:
        code, _, err = run(runner, inv, "add-customer", *args)
        assert code == 1, (args, err)
        assert message in err, (args, err)
        assert not other.exists()
    assert sorted(os.listdir(inv / "customers")) == [".gitkeep", "acme.yaml"]


def test_add_customer_leaves_other_files_byte_for_byte(inv: Path, runner: CliRunner) -> None:
    hand = "# edited by hand\napps:\n  web: {domains: [a.example], wsgi: 'a:b'}   # trailing comment\n"
    (inv / "customers" / "hand.yaml").write_text(hand)
    assert run(runner, inv, "add-customer", "acme", "--domain", "acme.example", "--wsgi", "a:b")[0] == 0
    assert (inv / "customers" / "hand.yaml").read_text() == hand


def test_remove_customer(inv: Path, runner: CliRunner) -> None:
    run(runner, inv, "add-customer", "acme", "--domain", "acme.example", "--wsgi", "a:b")
    assert run(runner, inv, "remove-customer", "acme")[0] == 0
    code, _, err = run(runner, inv, "remove-customer", "acme")
    assert code == 1 and "customer 'acme' does not exist" in err


def test_plan_exit_codes_and_apply(inv: Path, runner: CliRunner) -> None:
    code, out, _ = run(runner, inv, "plan", "--exit-code")
    assert code == 0 and "No changes." in out
    run(runner, inv, "add-customer", "acme", "--domain", "acme.example", "--wsgi", "a:b", "--env", "TOKEN=s3cret")
    code, out, _ = run(runner, inv, "plan", "--exit-code")
    assert code == 2 and "Plan: 2 to add, 0 to change, 0 to remove." in out
    assert "s3cret" not in out and "+env = TOKEN=***" in out
    assert run(runner, inv, "plan")[0] == 0  # without --exit-code changes are not an error
    code, out, err = run(runner, inv, "apply")
    assert code == 0, err
    assert "Apply complete: 2 added, 0 changed, 0 removed." in out
    assert "nginx is not running" in out  # nothing serves this inventory in a unit test
    assert oct(os.stat(inv / "vassals" / "acme_web.ini").st_mode & 0o777) == "0o640"
    code, out, _ = run(runner, inv, "plan", "--exit-code")
    assert code == 0 and "No changes." in out


def test_validate(inv: Path, runner: CliRunner) -> None:
    run(runner, inv, "add-customer", "acme", "--domain", "acme.example", "--wsgi", "a:b")
    code, out, _ = run(runner, inv, "validate")
    assert code == 0 and out.strip() == "OK: 1 customers, 1 apps, 2 files rendered."


def test_usage_errors_exit_1_not_2(inv: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["-i", str(inv), "plan", "--no-such-option"])
    assert exited.value.code == 1
    assert "No such option '--no-such-option'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main(["-i", str(inv), "add-customer", "x", "--domain", "x.example", "--wsgi", "a:b", "--env", "NOEQUALS"])
    assert exited.value.code == 1
    assert "Invalid value for '--env': 'NOEQUALS' is not KEY=VALUE" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main(["-i", str(inv), "plan", "--exit-code"])
    assert exited.value.code == 0
