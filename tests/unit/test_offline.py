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


# --- `limits --host`, `certs --host`: what the probe reads on a server, and what is refused without SSH ---


def test_the_probe_reads_certificate_files_with_bounds(tmp_path: Path) -> None:
    """A certificate or key may lie where a customer writes: a FIFO or a device is refused without blocking."""
    import os

    from hostctl.engine import status_probe

    (tmp_path / "cert.pem").write_text("PEM")
    (tmp_path / "big.pem").write_bytes(b"x" * (status_probe.PEM_MAX + 1))
    os.mkfifo(tmp_path / "fifo")
    found = status_probe.answer({"kind": "files", "files": [str(tmp_path / n) for n in ("cert.pem", "big.pem", "fifo", "none")]
                                 + ["/dev/zero"]})["files"]
    assert found[str(tmp_path / "cert.pem")] == {"data": "PEM"}
    assert found[str(tmp_path / "big.pem")] == {"error": f"is larger than {status_probe.PEM_MAX} bytes ({status_probe.PEM_MAX + 1})"}
    assert found[str(tmp_path / "fifo")] == found["/dev/zero"] == {"error": "is not a regular file"}
    assert found[str(tmp_path / "none")] == {"missing": True}


def test_the_probe_reads_a_v2_cgroups_figures(tmp_path: Path) -> None:
    from hostctl.engine import status_probe

    leaf = tmp_path / "hc" / "acme"
    leaf.mkdir(parents=True)
    for name, text in {"memory.current": "2097152\n", "memory.max": "67108864\n", "memory.events": "low 0\noom_kill 1\n",
                       "pids.current": "4\n", "pids.max": "max\n", "cpu.max": "50000 100000\n"}.items():
        (leaf / name).write_text(text)
    got = status_probe.answer({"kind": "limits", "cgroups": {
        "acme": {"version": "v2", "memory": str(leaf), "cpu": str(leaf), "pids": str(leaf)},
        "gone": {"version": "v2", "memory": str(tmp_path / "hc" / "gone"), "cpu": None, "pids": None},
        "off": {"version": None, "memory": None, "cpu": None, "pids": None}}})["usage"]
    assert got == {"acme": {"path": str(leaf), "memory": 2 << 20, "memory_limit": 64 << 20, "oom_kills": 1, "pids": 4,
                            "pids_limit": None, "cpu": 0.5}, "gone": None, "off": None}


def test_certs_rows_from_files_read_on_a_host(tmp_path: Path) -> None:
    """`certs --host` decides each row as locally, from the files the probe read on the server."""
    from hostctl.cli import certs as certs_cli
    from hostctl.engine import certs
    from hostctl.inventory import loader as inventory
    from tests.pki import CA

    cert, key = CA.create("hostctl offline CA").write(tmp_path / "tls", "acme", ["acme.example"])
    root = write_inventory(tmp_path / "inv", HOSTS, {
        "acme.yaml": customer("acme.example", tls={"certificate": "/srv/one/tls/acme.pem", "key": "/srv/one/tls/acme.key"}),
        "globex.yaml": customer("globex.example", "web2", tls={"certificate": "/srv/two/g.pem", "key": "/srv/two/g.key"})})
    inv = inventory.load(root)
    [spec] = certs_cli.host_specs(inv, "web1")  # where deploy ships acme's certificate on web1
    assert spec.certificate.startswith("/srv/one/state/") and spec.name == "acme_web"
    found = {spec.certificate: {"data": cert.read_text()}, spec.key: {"data": key.read_text()}}
    ok = certs_cli.rows(inv, certs.now_utc(), [spec], certs_cli._loader(found, "web1"))
    assert [(r["name"], r["issuer"], r["state"]) for r in ok] == [("acme_web", "hostctl offline CA", "ok")]
    found[spec.key] = {"error": "is not a regular file"}
    bad = certs_cli.rows(inv, certs.now_utc(), [spec], certs_cli._loader(found, "web1"))
    assert "is not a regular file on host 'web1'" in bad[0]["state"] and bad[0]["state"].startswith("unusable: ")
    missing = certs_cli.rows(inv, certs.now_utc(), certs_cli.host_specs(inv, "web2"), certs_cli._loader({}, "web2"))
    assert [(r["name"], r["state"]) for r in missing] == [("globex_web", "missing")]


def test_limits_and_certs_say_which_server_they_need(fleet: Path, no_ssh: None) -> None:
    """Refused before any connection: this machine's cgroups are not a multi-host inventory's."""
    plain = invoke(fleet, "limits")
    assert plain.exit_code == 1 and "`hostctl limits --host NAME` reads a server's cgroups (hosts: web1, web2)" in plain.output
    both = invoke(fleet, "limits", "--host", "web1", "--apply")
    assert both.exit_code == 1 and "`hostctl deploy --host NAME` writes a server's cgroups and limits" in both.output
    unknown = invoke(fleet, "limits", "--host", "web9")
    assert unknown.exit_code == 1 and "unknown host 'web9'" in unknown.output
    issue = invoke(fleet, "certs", "--host", "web1", "issue")
    assert issue.exit_code == 1 and "`certs issue` runs on this machine" in issue.output
