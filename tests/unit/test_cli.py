"""The command line: exit codes, messages and what each command writes (CliRunner, no servers)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from hostctl.cli.main import cli, main


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


def test_plan_exit_code_is_1_when_a_customer_is_held_back_even_with_changes_pending(inv: Path, runner: CliRunner) -> None:
    """README's exit table: 1 when a customer is held back (as apply exits then), 2 only for changes alone."""
    run(runner, inv, "add-customer", "acme", "--domain", "acme.example", "--wsgi", "a:b")
    (inv / "customers" / "globex.yaml").write_text("apps: [\n")
    code, out, err = run(runner, inv, "plan", "--exit-code")
    assert code == 1, (out, err)
    assert "Plan: 2 to add, 0 to change, 0 to remove." in out  # the others' changes are still shown
    assert "1 customer(s) held back by their own inventory file; apply keeps their live files as they are:" in err
    assert "  globex: customers/globex.yaml:2: is not valid YAML: " in err, err
    code, _, err = run(runner, inv, "apply")
    assert code == 1 and "globex: customers/globex.yaml:2:" in err, err


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


def test_init_refresh_renders_system_again_and_shows_the_diff(tmp_path: Path, runner: CliRunner) -> None:
    root = tmp_path / "prod"
    assert run(runner, root, "init", "--production")[0] == 0
    system = root / "system"
    customers_before = sorted(os.listdir(root / "customers"))
    settings = (root / "hostctl.yaml").read_text()
    (root / "hostctl.yaml").write_text(settings.replace("check_interval: 60 ", "check_interval: 30 "))
    (system / "hostctl-restore.service").unlink()
    (system / "emperor.ini").write_text("hand edit\n")
    code, out, err = run(runner, root, "init", "--refresh")
    assert code == 0, err
    assert "-OnBootSec=60\n-OnUnitActiveSec=60\n+OnBootSec=30\n+OnUnitActiveSec=30\n" in out
    assert "--- /dev/null\n+++ b/system/hostctl-restore.service\n" in out and "-hand edit\n" in out
    assert out.rstrip().endswith("3 file(s) written in " + str(system) + "; install them as the README's "
                                 "'Running it in production' says, then `systemctl daemon-reload`")
    assert "OnUnitActiveSec=30" in (system / "hostctl-logrotate.timer").read_text()
    assert (system / "emperor.ini").read_text().startswith("; The uWSGI Emperor")
    assert (root / "hostctl.yaml").read_text() != settings and sorted(os.listdir(root / "customers")) == customers_before
    code, out, _ = run(runner, root, "init", "--refresh")
    assert code == 0 and out == f"{system} is up to date.\n"
    # Without --refresh an existing inventory is refused, and the message says what to run.
    code, _, err = run(runner, root, "init")
    assert code == 1 and "init --refresh` renders system/ again" in err


def test_inventory_option_is_accepted_after_the_subcommand(tmp_path: Path, runner: CliRunner) -> None:
    root = tmp_path / "prod"
    result = runner.invoke(cli, ["init", "--production", "-i", str(root)])
    assert result.exit_code == 0, result.output
    assert (root / "hostctl.yaml").is_file() and not (Path("inventory") / "hostctl.yaml").exists()
    # after any command, also a lazily imported group's subcommand; the later one wins
    for args in (["validate", "-i", str(root)], ["--inventory", "nowhere", "validate", "--inventory", str(root)],
                 ["certs", "-i", str(root)], ["certs", "renew", "-i", str(root)], ["rollback", "--list", "-i", str(root)]):
        result = runner.invoke(cli, args)
        assert result.exit_code == 0, (args, result.output)


def test_init_writes_a_gitignore_so_git_status_shows_only_configuration(tmp_path: Path, runner: CliRunner) -> None:
    import shutil
    import subprocess

    if not shutil.which("git"):
        pytest.skip("git is not installed")
    root = tmp_path / "inv"
    assert run(runner, root, "init")[0] == 0
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    # what apply and serve write beside the customer files with the default (relative) paths
    for rel in ("vassals/acme_web.ini", "nginx/acme_web.conf", "state/manifest.json", "log/acme/web.log",
                "run/acme/web.sock", "certs/acme_web/privkey.pem", "acme-challenge/token"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("secret\n")
    (root / "customers" / "acme.yaml").write_text("apps: {}\n")
    status = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=all"],
                            capture_output=True, text=True, check=True).stdout.split("\n")
    untracked = sorted(line[3:] for line in status if line)
    assert untracked == [".gitignore", "customers/.gitkeep", "customers/acme.yaml", "hostctl.yaml"] + sorted(
        f"system/{name}" for name in os.listdir(root / "system"))


def test_add_customer_takes_static_threads_app_cpu_pids(inv: Path, runner: CliRunner, tmp_path: Path) -> None:
    # validate checks that nginx's workers can enter a static directory; pytest's tmp_path is under a 0700 one
    site = Path(tempfile.mkdtemp(prefix="hostctl-site-", dir="/tmp"))
    os.chmod(site, 0o755)
    (site / "static").mkdir(parents=True)
    try:
        _add_customer_with_static(inv, runner, site)
    finally:
        shutil.rmtree(site)


def _add_customer_with_static(inv: Path, runner: CliRunner, site: Path) -> None:
    code, _, err = run(runner, inv, "add-customer", "acme", "--domain", "acme.example", "--wsgi", "acme.wsgi:application",
                       "--app", "shop", "--chdir", str(site), "--threads", "4", "--static", f"/static/={site / 'static'}",
                       "--static", f"/media/={site}", "--cpu", "0.5", "--pids", "64", "--memory", "128M")
    assert code == 0, err
    data = yaml.safe_load((inv / "customers" / "acme.yaml").read_text())
    assert data == {"limits": {"memory": "128M", "cpu": 0.5, "pids": 64}, "apps": {"shop": {
        "domains": ["acme.example"], "wsgi": "acme.wsgi:application", "chdir": str(site), "threads": 4,
        "static": {"/static/": str(site / "static"), "/media/": str(site)}}}}
    assert run(runner, inv, "validate")[0] == 0


def test_add_customer_refuses_paths_that_do_not_exist_and_writes_nothing(inv: Path, runner: CliRunner, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir"
    cases = [
        (["--chdir", str(missing)], f"customers/acme.yaml:7: apps.web.chdir: '{missing}' does not exist"),
        (["--virtualenv", str(missing)], f"apps.web.virtualenv: '{missing}' does not exist"),
        (["--static", "/static"], "'/static' is not PREFIX=DIR"),
        (["--pids", "2"], "limits.pids"),
        (["--app", "Web"], "'Web' is not a valid app name"),
    ]
    for extra, message in cases:
        code, _, err = run(runner, inv, "add-customer", "acme", "--domain", "acme.example", "--wsgi", "a:b", *extra)
        assert code != 0 and message in err, (extra, err)  # 2: click's usage error (main() makes it 1)
        assert not (inv / "customers" / "acme.yaml").exists()
    code, _, err = run(runner, inv, "add-customer", "acme", "--domain", "acme.example", "--wsgi", str(missing / "app.py"))
    assert code == 1 and f"apps.web.wsgi: '{missing / 'app.py'}' does not exist" in err, err


def test_add_customer_is_not_blocked_by_another_customers_broken_file(inv: Path, runner: CliRunner) -> None:
    (inv / "customers" / "broken.yaml").write_text("apps: {web: {domains: [b.example], wsgi: a:b, procesess: 2}}\n")
    code, _, err = run(runner, inv, "add-customer", "acme", "--domain", "acme.example", "--wsgi", "a:b")
    assert code == 0, err
