"""A multi-host inventory checked with no server reachable (issue 12, item 3): `validate`, `plan --host --offline`.

For CI and pre-commit hooks: every check that needs no server runs, and no SSH connection
is even attempted (``ssh.connect`` and paramiko's connect fail the test if called).
"""

from __future__ import annotations

from pathlib import Path

import paramiko
import pytest
from click.testing import CliRunner

from hostctl.cli.main import cli
from hostctl.targets import ssh
from tests.unit.test_multihost import HOSTS, customer
from tests.unit.test_validation import write_inventory


@pytest.fixture
def no_ssh(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("an offline command tried to reach a server over SSH")

    monkeypatch.setattr(ssh, "connect", refuse)
    monkeypatch.setattr(paramiko.SSHClient, "connect", refuse)


@pytest.fixture
def fleet(tmp_path: Path) -> Path:
    return write_inventory(tmp_path / "inv", HOSTS, {
        "acme.yaml": customer("acme.example"),
        "globex.yaml": customer("globex.example", "web2"),
        "initech.yaml": customer("initech.example", "web2", on_demand=True),
    })


def invoke(root: Path, *args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(cli, ["-i", str(root), *args])


def test_validate_checks_a_multi_host_inventory_without_ssh(fleet: Path, no_ssh: None) -> None:
    result = invoke(fleet, "validate")
    assert result.exit_code == 0, result.output
    # web2's on-demand customer has a socket companion besides its vassal and server block
    assert "OK: 3 customers, 3 apps on 2 hosts (web1: 1 customers, 2 files; web2: 2 customers, 5 files)." in result.output
    assert "checked without SSH" in result.output


def test_validate_names_file_line_and_field_of_a_per_host_problem(fleet: Path, no_ssh: None) -> None:
    """globex lives on web2, whose run_dir is /tmp itself: a private /tmp would hide its sockets."""
    (fleet / "hostctl.yaml").write_text(HOSTS.replace("run_dir: /srv/two/run", "run_dir: /tmp"))
    (fleet / "customers" / "globex.yaml").write_text(customer("globex.example", "web2", private_tmp=True))
    result = invoke(fleet, "validate")
    assert result.exit_code == 1
    assert ("customers/globex.yaml:5: apps.web.private_tmp: a private /tmp would hide '/tmp' from the app"
            in result.output)


def test_validate_renders_every_hosts_files(fleet: Path, no_ssh: None) -> None:
    """The inventory's templates are rendered for each host: a broken one fails validate (exit 1)."""
    (fleet / "templates").mkdir()
    (fleet / "templates" / "server.conf.j2").write_text("server { {% if %} }\n")
    result = invoke(fleet, "validate")
    assert result.exit_code == 1
    assert "Error: template " in result.output and "server.conf.j2" in result.output


def test_plan_offline_without_a_record_plans_against_an_empty_host(fleet: Path, no_ssh: None, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    result = invoke(fleet, "plan", "--host", "web2", "--offline", "--exit-code")
    assert result.exit_code == 2, result.output
    assert result.output.startswith("Offline: nothing is recorded on this machine for host 'web2' (no deploy to it "
                                    "from here yet, or ")
    assert "+ /srv/two/vassals/globex_web.ini" in result.output and "+ /srv/two/nginx/initech_web.conf" in result.output
    assert "/srv/one/" not in result.output  # acme lives on web1
    unknown = invoke(fleet, "plan", "--host", "web7", "--offline")
    assert unknown.exit_code == 1 and "unknown host 'web7'; hosts in hostctl.yaml: web1, web2." in unknown.output
    alone = invoke(fleet, "plan", "--offline")
    assert alone.exit_code == 1 and "--offline needs --host NAME" in alone.output


# --- `limits --apply` and `restore` make the same directories: the engine's runtime records ---------


def test_limits_apply_makes_the_directories_of_the_engines_runtime_record(tmp_path: Path) -> None:
    """One source for the directory paths: `limits --apply` makes exactly what the runtime record lists
    (which `restore` recreates after a reboot), with its modes. No cgroup is touched (cgroup.mode off)."""
    import os
    import stat

    from hostctl.engine import apply as apply_mod, pipeline

    root = write_inventory(tmp_path / "inv", "isolation: {users: invoker}\ncgroup: {mode: \"off\"}\n", {
        "acme.yaml": customer("acme.example"), "initech.yaml": customer("initech.example", on_demand=True)})
    apply_mod.apply_limits(root)
    inv, owners = pipeline.load_checked(root, host_checks=False)
    records, host = apply_mod.runtime_records(inv, owners.identity.per_customer, owners.root,
                                              owners.identity.nginx_group, owners.identity.cgroup)
    listed = [*host.dirs, *host.shared, *(d for r in records for d in r.dirs)]
    assert {os.path.basename(d.path) for d in records[0].dirs} == {"acme", "uwsgi"}  # run/acme, log/acme, log/acme/uwsgi
    for d in listed:
        st = os.lstat(d.path)
        assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == d.mode, d
    made = {str(p) for p in (tmp_path / "inv").rglob("*") if p.is_dir() and p.name != "customers"}
    assert made == {d.path for d in listed}, "limits --apply made a directory the record does not list, or missed one"
