"""Non-root SSH: a host's SSH user, `become: sudo`, and isolation that never silently degrades (pure parts).

A host whose SSH user is not root gets per-customer users only through
`become: sudo`; without it that is an inventory error naming the host, unless
the inventory says `isolation: {users: invoker}` for it (or for all hosts).
``ssh.become_command`` is checked by running it with ``sh`` and a stand-in
``sudo`` on PATH: the command arrives byte for byte, and a sudo that wants a
password (or no sudo at all) is a clear error naming the host.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings as hsettings, strategies as st

from hostctl.errors import HostctlError, InventoryError
from hostctl.inventory import loader as inventory, placement
from hostctl.inventory.schema import Settings
from hostctl.render import identity as identity_mod, templates
from hostctl.render.files import render
from hostctl.targets import ssh
from tests.unit.test_validation import write_inventory

ROOT = Path(__file__).resolve().parents[2]


def _settings(web2: str, isolation: str = "auto") -> str:
    return f"""\
hosts:
  web1:
    address: 10.0.0.1
    emperor_dir: /srv/one/vassals
    nginx_dir: /srv/one/nginx
    run_dir: /srv/one/run
    log_dir: /srv/one/log
    state_dir: /srv/one/state
  web2:
    address: 10.0.0.2
    emperor_dir: /srv/two/vassals
    nginx_dir: /srv/two/nginx
    run_dir: /srv/two/run
    log_dir: /srv/two/log
    state_dir: /srv/two/state
{web2}default_host: web1
isolation: {{users: {isolation}}}
"""


CUSTOMERS = {
    "acme.yaml": "apps:\n  web: {domains: [acme.example], wsgi: 'app:application'}\n",
    "globex.yaml": "host: web2\napps:\n  web: {domains: [globex.example], wsgi: 'app:application'}\n",
}


def _load(tmp_path: Path, web2: str, isolation: str = "auto") -> inventory.Inventory:
    return inventory.load(write_inventory(tmp_path / "inv", _settings(web2, isolation), CUSTOMERS))


def _vassal(inv: inventory.Inventory, host: str, customer: str) -> str:
    view = placement.host_inventory(inv, host)
    files = render(view, identity_mod.host_identity(inv.settings, host), templates.environment(inv.root))
    return files[f"{view.settings.emperor_dir}/{customer}_web.ini"].content


@pytest.mark.parametrize("mode", ["auto", "per-customer"])
def test_a_non_root_host_without_become_is_an_error_naming_the_host(tmp_path: Path, mode: str) -> None:
    """Old code: 'auto' silently ran web2's customers as 'deploy' (no users, no cgroups); now nothing loads."""
    with pytest.raises(InventoryError) as caught:
        _load(tmp_path, "    user: deploy\n", mode)
    [problem] = caught.value.problems
    assert (problem.file, problem.line, problem.field) == ("hostctl.yaml", 16, "hosts.web2.user")
    assert "host 'web2'" in problem.message and "'deploy' is not root" in problem.message
    assert "become: sudo" in problem.message and "isolation: {users: invoker}" in problem.message


def test_validate_refuses_it_offline_with_exit_1(tmp_path: Path) -> None:
    """`validate` (no SSH) says so: the documented exit 1, file, line, field and host."""
    from click.testing import CliRunner

    from hostctl.cli.main import cli

    root = write_inventory(tmp_path / "inv", _settings("    user: deploy\n"), CUSTOMERS)
    result = CliRunner().invoke(cli, ["-i", str(root), "validate"])
    assert result.exit_code == 1, result.output
    assert "hostctl.yaml:16: hosts.web2.user: host 'web2': the SSH user 'deploy' is not root" in result.stderr
    (root / "hostctl.yaml").write_text(_settings("    user: deploy\n    become: sudo\n"))
    assert CliRunner().invoke(cli, ["-i", str(root), "validate"]).exit_code == 0


def test_host_identity_refuses_a_non_root_host_without_become() -> None:
    """Settings made without the loader (a Fabric task, a test): the identity itself refuses, naming the host."""
    settings = Settings.model_validate({"hosts": {"web2": {
        "address": "10.0.0.2", "user": "deploy", "emperor_dir": "/v", "nginx_dir": "/n", "run_dir": "/r",
        "log_dir": "/l", "state_dir": "/s"}}})
    with pytest.raises(HostctlError, match=r"host 'web2'.*'deploy' is not root"):
        identity_mod.host_identity(settings, "web2")


def test_become_sudo_gives_a_non_root_host_per_customer_users(tmp_path: Path) -> None:
    inv = _load(tmp_path, "    user: deploy\n    become: sudo\n")
    assert inv.settings.hosts["web2"].become == "sudo"
    ident = identity_mod.host_identity(inv.settings, "web2")
    assert ident.per_customer and ident.nginx_group == "www-data"
    assert "uid = hc-globex" in _vassal(inv, "web2", "globex")


def test_a_host_may_say_isolation_users_invoker_for_itself(tmp_path: Path) -> None:
    inv = _load(tmp_path, "    user: deploy\n    isolation: {users: invoker}\n")
    assert not identity_mod.host_identity(inv.settings, "web2").per_customer
    assert "uid =" not in _vassal(inv, "web2", "globex")
    assert "uid = hc-acme" in _vassal(inv, "web1", "acme")  # web1 (root) keeps per-customer users
    assert placement.host_inventory(inv, "web2").settings.isolation.users == "invoker"
    assert placement.host_inventory(inv, "web1").settings.isolation.users == "auto"


def test_the_inventory_may_say_invoker_for_every_host(tmp_path: Path) -> None:
    inv = _load(tmp_path, "    user: deploy\n", "invoker")
    assert not identity_mod.host_identity(inv.settings, "web2").per_customer


def test_become_is_sudo_or_nothing(tmp_path: Path) -> None:
    with pytest.raises(InventoryError, match=r"hostctl.yaml:17: hosts.web2.become"):
        _load(tmp_path, "    user: deploy\n    become: su\n")


# --- the command that runs through sudo ----------------------------------------------------

FAKE_SUDO = """#!/bin/sh
# stands in for sudo: only '-n' (never prompt) is accepted; then runs the rest as given
[ "$1" = -n ] || { echo "fake sudo: no -n" >&2; exit 99; }
shift
[ "$1" = -- ] && shift
exec "$@"
"""


def _bin(tmp_path: Path, sudo: str | None) -> Path:
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    for tool in ("printf", "cat", "true"):
        found = subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True, text=True).stdout.strip()
        if found.startswith("/") and not (bindir / tool).exists():
            os.symlink(found, bindir / tool)
    if sudo is not None:
        (bindir / "sudo").write_text(sudo)
        (bindir / "sudo").chmod(0o755)
    (bindir / "sh").unlink(missing_ok=True)
    os.symlink("/bin/sh", bindir / "sh")
    return bindir


def _run(bindir: Path, command: str, stdin: bytes = b"") -> subprocess.CompletedProcess:
    return subprocess.run(["/bin/sh", "-c", command], input=stdin, capture_output=True, env={"PATH": str(bindir)}, timeout=30)


def test_without_become_the_command_is_unchanged() -> None:
    assert ssh.become_command("echo hi", None, "host 'web1'") == "echo hi"


@hsettings(max_examples=60, deadline=None)
@given(text=st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), max_size=40))
def test_become_runs_exactly_the_command_given(tmp_path_factory: pytest.TempPathFactory, text: str) -> None:
    """Whatever the inventory put in the command (quoted by its maker), sudo's shell gets it byte for byte."""
    bindir = _bin(tmp_path_factory.mktemp("become"), FAKE_SUDO)
    command = f"printf %s {shlex.quote(text)} && cat"
    done = _run(bindir, ssh.become_command(command, "sudo", "host 'we$(b)`x`'"), b"-stdin")
    assert done.returncode == 0, done.stderr
    assert done.stdout == text.encode() + b"-stdin"  # stdin (the engine's payload) reaches the command


def test_sudo_that_wants_a_password_is_a_clear_error_naming_the_host(tmp_path: Path) -> None:
    wants = "#!/bin/sh\necho 'sudo: a password is required' >&2\nexit 1\n"
    done = _run(_bin(tmp_path, wants), ssh.become_command("echo ran", "sudo", "host 'web2' (deploy@10.0.0.2:22)"))
    assert done.returncode == ssh.BECOME_FAILED and b"ran" not in done.stdout
    message = ssh.become_failure(done.stderr.decode())
    assert message == ("host 'web2' (deploy@10.0.0.2:22): become: sudo: 'sudo -n' refused to run a command as root "
                       "(sudo: a password is required); give this user passwordless sudo (NOPASSWD) on that host")


def test_a_host_without_sudo_is_a_clear_error_naming_the_host(tmp_path: Path) -> None:
    done = _run(_bin(tmp_path, None), ssh.become_command("echo ran", "sudo", "host 'web2'"))
    assert done.returncode == ssh.BECOME_FAILED and b"ran" not in done.stdout
    assert ssh.become_failure(done.stderr.decode()) == "host 'web2': become: sudo, but sudo is not installed there"
    assert ssh.become_failure("some other error\n") is None


def test_every_remote_command_goes_through_the_one_runner() -> None:
    """Only targets/ssh.py opens SSH sessions and runs commands there (so `become` cannot be missed)."""
    offenders = []
    for path in sorted((ROOT / "hostctl").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        if path.relative_to(ROOT).as_posix() != "hostctl/targets/ssh.py":
            for needle in (r"\.exec_command\(", r"\.open_session\(", r"(?<![A-Za-z_.])Connection\(", r"\.invoke_shell\("):
                if re.search(needle, text):
                    offenders.append(f"{path.relative_to(ROOT)}: {needle}")
    assert offenders == []


def test_deploy_does_not_even_read_a_refused_host(tmp_path: Path) -> None:
    """deploy's head start (SSH begun before the inventory loads) skips a host the inventory refuses."""
    from hostctl.targets import deploy

    web2 = "    user: deploy\n    port: 1\n"  # were it read, a connection to 10.0.0.2:1 would be tried
    root = write_inventory(tmp_path / "inv", _settings(web2).replace("address: 10.0.0.2", "address: 127.0.0.1"), CUSTOMERS)
    head = deploy.HeadStart(str(root), ["web2"])
    try:
        assert head.connections == {} and head.digests == {}
    finally:
        head.close()
    with pytest.raises(InventoryError, match="hosts.web2.user: host 'web2'"):
        deploy.deploy(root, ["web2"])
