"""Users and cgroups around the pipeline: useradd argv, missing users, the cgroup edge on a fake tree, CLI notes."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from hostctl.cli.main import cli
from hostctl.engine import cgroupfs, owners as identity, users
from hostctl.errors import HostctlError
from hostctl.inventory import loader as inventory
from hostctl.inventory.schema import Limits
from hostctl.render import cgroups

SETTINGS = {"emperor_dir": "v", "nginx_dir": "n", "run_dir": "r", "log_dir": "l", "state_dir": "s"}
CUSTOMER = {"limits": {"memory": "64M", "pids": 32}, "apps": {"web": {"domains": ["acme.example"], "wsgi": "a:b"}}}


def _inventory(tmp_path: Path, **settings: object) -> Path:
    root = tmp_path / "inv"
    (root / "customers").mkdir(parents=True)
    (root / "hostctl.yaml").write_text(yaml.safe_dump({**SETTINGS, **settings}))
    (root / "customers" / "acme.yaml").write_text(yaml.safe_dump(CUSTOMER))
    return root


def test_useradd_argv() -> None:
    assert users.useradd_argv("hc-acme", None, 20000, 29999) == [
        "useradd", "--system", "--user-group", "--shell", "/usr/sbin/nologin", "--comment", "hostctl customer",
        "-KSYS_UID_MIN=20000", "-KSYS_UID_MAX=29999", "-KSYS_GID_MIN=20000", "-KSYS_GID_MAX=29999",
        "--home-dir", "/nonexistent", "--no-create-home", "hc-acme"]
    assert users.useradd_argv("hc-acme", "/srv/home", 20000, 29999)[-4:] == ["--home-dir", "/srv/home/hc-acme", "--create-home", "hc-acme"]


def test_missing_users_are_listed_for_create_users_or_refused(tmp_path: Path) -> None:
    inv = inventory.load(_inventory(tmp_path, isolation={"users": "per-customer", "user_prefix": "hcz-"}))
    owners, problems = identity.resolve(inv, euid=0, allow_missing=True)
    assert problems == [] and owners.missing_users == ("hcz-acme",)
    _, problems = identity.resolve(inv, euid=0)
    assert [str(p) for p in problems] == [
        "customers/acme.yaml:1: Unix user 'hcz-acme' does not exist (run `hostctl apply --create-users`, "
        "or create it, e.g. `useradd --system --no-create-home -K SYS_UID_MIN=20000 -K SYS_UID_MAX=29999 hcz-acme`)"]


def test_cgroup_edge_on_a_fake_v1_tree(tmp_path: Path) -> None:
    """probe -> decide -> plan -> apply -> plan again is empty; usage and cgroupfs.memory read it back."""
    fake = tmp_path / "cg"
    for controller in ("memory", "cpu", "pids"):
        (fake / controller).mkdir(parents=True)
    inv = inventory.load(_inventory(tmp_path, cgroup={"mode": "v1", "v1_root": str(fake), "parent": "hc"}))
    h, errors = cgroupfs.hierarchy(inv.settings, euid=0)
    assert errors == [] and h.version == "v1" and h.controllers == {"memory", "cpu", "pids"}
    desired = [cgroups.customer_cgroup(h, "acme", Limits(memory=64 << 20, pids=32))]
    live, present = cgroupfs.read_live(desired, h)
    changes = cgroups.plan(desired, live, present)
    assert [c.action for c in changes].count("mkdir") == 6
    assert cgroupfs.apply(changes) == []
    assert (fake / "memory/hc/acme/memory.limit_in_bytes").read_text() == str(64 << 20)
    assert (fake / "cpu/hc/acme/cpu.cfs_quota_us").read_text() == "-1"
    assert cgroups.plan(desired, *cgroupfs.read_live(desired, h)) == ()
    (fake / "memory/hc/acme/memory.usage_in_bytes").write_text("1048576\n")
    (fake / "memory/hc/acme/memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
    (fake / "pids/hc/acme/pids.current").write_text("3\n")
    usage = cgroupfs.usage(h, "acme")
    assert (usage.memory, usage.memory_limit, usage.oom_kills, usage.pids, usage.pids_limit, usage.cpu) == (1 << 20, 64 << 20, 2, 3, 32, None)
    assert cgroupfs.memory(inv.settings, "acme") == (1 << 20, 64 << 20)
    assert cgroupfs.memory(inv.settings, "nobody") is None
    table = cgroups.usage_table([("acme", usage), ("other", None)]).splitlines()
    assert table[1].split() == ["acme", "1.0M", "64.0M", "2%", "2", "3/32", "max"]
    assert table[2].startswith("other") and "no cgroup yet" in table[2]
    # a departed customer's cgroup is removed
    (fake / "memory/hc/gone").mkdir()
    assert cgroups.plan(desired, *cgroupfs.read_live(desired, h)) == (cgroups.CgroupChange("rmdir", str(fake / "memory/hc/gone")),)


def test_cli_says_who_vassals_run_as_and_what_is_not_enforced(tmp_path: Path) -> None:
    root = _inventory(tmp_path, isolation={"users": "invoker"})
    result = CliRunner().invoke(cli, ["-i", str(root), "plan", "--no-diff"])
    assert result.exit_code == 0, result.output
    assert "note: vassals run as the invoking user" in result.stderr
    assert result.stderr.count("not enforced") == 1
    assert "note: the limits of acme are not enforced: vassals run as the invoking user and cgroup.mode is 'auto'" in result.stderr
    shown = CliRunner().invoke(cli, ["-i", str(root), "limits"])
    assert shown.exit_code == 0 and shown.stdout.startswith("cgroup limits are not enforced: vassals run as the invoking user")


def test_production_restore_unit_recreates_runtime_dirs_and_cgroups_before_the_emperor(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["-i", str(tmp_path / "prod"), "init", "--production"])
    assert result.exit_code == 0, result.output
    emperor = (tmp_path / "prod" / "system" / "hostctl-emperor.service").read_text()
    # A separate unit: its failure shows in `systemctl --failed` (no hidden ExecStartPre=-), and the Emperor still starts.
    assert "Wants=hostctl-restore.service\nAfter=hostctl-restore.service\n" in emperor and "hostctl -i" not in emperor
    unit = (tmp_path / "prod" / "system" / "hostctl-restore.service").read_text()
    assert "ExecStart=/usr/local/bin/hostctl restore --state-dir /var/lib/hostctl\n" in unit
    assert "Before=hostctl-emperor.service" in unit and "Type=oneshot" in unit
    assert "WantedBy=hostctl-emperor.service multi-user.target" in unit


def test_an_optional_limit_file_the_kernel_lacks_is_noted_not_fatal(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir" / "memory.swap.max"
    changes = (cgroups.CgroupChange("write", str(missing), None, "0", optional=True),)
    [message] = cgroupfs.apply(changes)
    assert message.startswith(f"{missing} is not available here")
    with pytest.raises(HostctlError, match="could not write '0' to .*; no vassal or server block was written"):
        cgroupfs.apply((cgroups.CgroupChange("write", str(missing), None, "0"),))


def test_plan_and_apply_say_when_only_cgroup_limits_change(tmp_path: Path) -> None:
    """A changed limit changes no file (the vassal names only the cgroup): plan must not say "No changes"."""
    fake = tmp_path / "cg"
    for controller in ("memory", "cpu", "pids"):
        (fake / controller).mkdir(parents=True)
    root = _inventory(tmp_path, isolation={"users": "invoker"}, cgroup={"mode": "v1", "v1_root": str(fake), "parent": "hc"})
    runner = CliRunner()
    first = runner.invoke(cli, ["-i", str(root), "apply"])
    assert first.exit_code == 0, first.output
    assert runner.invoke(cli, ["-i", str(root), "plan", "--exit-code"]).exit_code == 0
    (root / "customers" / "acme.yaml").write_text(yaml.safe_dump({**CUSTOMER, "limits": {"memory": "128M", "pids": 32}}))
    planned = runner.invoke(cli, ["-i", str(root), "plan", "--exit-code"])
    assert planned.exit_code == 2, planned.output
    assert f"~ cgroup {fake}/memory/hc/acme/memory.limit_in_bytes" in planned.stdout, planned.stdout
    assert "No changes" not in planned.stdout
    assert planned.stdout.rstrip().endswith("Plan: no file changes; 1 cgroup change(s) to make (listed above).")
    applied = runner.invoke(cli, ["-i", str(root), "apply"])
    assert applied.exit_code == 0 and "No changes" not in applied.stdout, applied.output
    assert applied.stdout.rstrip().endswith("Apply complete: no file changes; 1 cgroup change(s) made.")
    assert (fake / "memory/hc/acme/memory.limit_in_bytes").read_text() == str(128 << 20)
    again = runner.invoke(cli, ["-i", str(root), "plan", "--exit-code"])
    assert again.exit_code == 0 and "No changes. The live files match the inventory." in again.stdout


@pytest.mark.skipif(__import__("os").geteuid() != 0, reason="per-customer users need root")
def test_plan_lists_missing_users_and_says_to_apply_with_create_users(tmp_path: Path) -> None:
    root = _inventory(tmp_path, isolation={"users": "per-customer", "user_prefix": "hcz-"}, cgroup={"mode": "off"})
    planned = CliRunner().invoke(cli, ["-i", str(root), "plan", "--no-diff"])
    assert planned.exit_code == 0, planned.output
    lines = planned.stdout.splitlines()
    assert lines[:2] == ["+ user hcz-acme (created by `hostctl apply --create-users`)",
                         "note: each new customer needs its Unix user: run `hostctl apply --create-users` (the default; "
                         "leave it off only if you create users yourself, e.g. from LDAP)"], lines


def test_a_customer_held_back_by_its_broken_file_gets_its_limits_back_after_a_reboot(tmp_path: Path) -> None:
    """Its last-known-good vassal stays live, so restore (no inventory read) recreates its cgroup and limits too."""
    fake = tmp_path / "cg"
    root = _inventory(tmp_path, isolation={"users": "invoker"}, cgroup={"mode": "v1", "v1_root": str(fake), "parent": "hc"})
    (root / "customers" / "globex.yaml").write_text(yaml.safe_dump({**CUSTOMER, "limits": {"memory": "32M"},
                                                                    "apps": {"web": {"domains": ["globex.example"], "wsgi": "a:b"}}}))
    for controller in ("memory", "cpu", "pids"):
        (fake / controller).mkdir(parents=True)
    runner = CliRunner()
    assert runner.invoke(cli, ["-i", str(root), "apply"]).exit_code == 0
    (root / "customers" / "globex.yaml").write_text("apps: [\n")
    held = runner.invoke(cli, ["-i", str(root), "apply"])
    assert held.exit_code == 1 and "globex: customers/globex.yaml:2:" in held.stderr, held.output
    import shutil

    shutil.rmtree(fake)  # "reboot": the cgroups are gone
    for controller in ("memory", "cpu", "pids"):
        (fake / controller).mkdir(parents=True)
    restored = runner.invoke(cli, ["-i", str(root), "restore"])
    assert restored.exit_code == 0 and "2 customer(s) restored, 0 failed." in restored.stdout, restored.output
    assert (fake / "memory/hc/globex/memory.limit_in_bytes").read_text() == str(32 << 20)
    assert (fake / "memory/hc/acme/memory.limit_in_bytes").read_text() == str(64 << 20)
