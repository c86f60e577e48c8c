"""The engine on its own: standard library only, shipped as a zip, its state listing, its runtime record and restore."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

from hostctl.targets import shipping
from hostctl.engine.core import listing, runtime
from hostctl.engine.core.cgroups import CustomerCgroup, Write
from hostctl.engine.core.manifest import Entry, Manifest, sha256
from hostctl.engine.core.runtime import CustomerRuntime, Directory, HostRuntime

ENGINE = Path(shipping.ENGINE_DIR)


def test_the_engine_imports_only_the_standard_library_and_itself() -> None:
    """What is shipped to a server must run with its python3 alone."""
    wrong = []
    for path in sorted(ENGINE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
            for name in names:
                top = name.split(".")[0]
                if top == "__future__" or top in sys.stdlib_module_names:
                    continue
                if name == "hostctl.engine.core" or name.startswith("hostctl.engine.core."):
                    continue
                wrong.append(f"{path.name}:{node.lineno}: {name}")
    assert not wrong, wrong


def _tree(tmp_path: Path) -> listing.Where:
    where = listing.Where(str(tmp_path / "vassals"), str(tmp_path / "nginx"), str(tmp_path / "state"))
    for d in (where.emperor_dir, where.nginx_dir, where.runtime_dir):
        os.makedirs(d)
    files = {f"{where.emperor_dir}/acme_web.ini": ("[uwsgi]\n", 0o640), f"{where.emperor_dir}/acme_web.ini.socket": ("/s\n", 0o640),
             f"{where.nginx_dir}/acme_web.conf": ("server {}\n", 0o644), f"{where.nginx_dir}/zeta b.conf": ("x", 0o600),
             f"{where.runtime_dir}/acme.json": ("{}\n", 0o600), f"{where.emperor_dir}/notes.txt": ("not listed", 0o644)}
    for path, (text, mode) in files.items():
        Path(path).write_text(text)
        os.chmod(path, mode)
    os.symlink("/etc/passwd", f"{where.nginx_dir}/link.conf")  # not a regular file: never listed
    Path(where.manifest).write_text(Manifest({f"{where.emperor_dir}/acme_web.ini": Entry(sha256("[uwsgi]\n"), "vassal", "acme", "web")}).to_json())
    return where


def test_the_state_text_computed_in_python_is_what_the_shell_command_prints(tmp_path: Path) -> None:
    """The engine's compare-and-swap hashes the same text deploy read over SSH."""
    where = _tree(tmp_path)
    shell = subprocess.run(["sh", "-c", listing.shell_command(where, facts=False)], capture_output=True, text=True, check=True).stdout
    assert listing.state_text(where) == shell
    assert "notes.txt" not in shell and "link.conf" not in shell and f"{where.runtime_dir}/acme.json" in shell
    with_facts = subprocess.run(["sh", "-c", listing.shell_command(where)], capture_output=True, text=True, check=True).stdout
    files, facts = listing.split(with_facts)
    assert files == shell and facts.startswith(f"uid {os.geteuid()}\n")
    Path(f"{where.nginx_dir}/acme_web.conf").write_text("edited\n")
    assert listing.digest(listing.state_text(where)) != listing.digest(shell)


def _records(tmp_path: Path, state: str) -> list[str]:
    """Runtime records of three customers whose directories and (fake) cgroup live under tmp_path."""
    run, fake = tmp_path / "run", tmp_path / "cgroup"
    customers = ["alpha", "beta", "gamma"]
    records = [CustomerRuntime(c, None, (Directory(str(run / c), 0o750), Directory(str(tmp_path / "log" / c), 0o750)),
                               CustomerCgroup(c, (str(fake / "memory/hc"), str(fake / "memory/hc" / c)),
                                              (Write(str(fake / "memory/hc" / c / "memory.limit_in_bytes"), "67108864"),)))
               for c in customers]
    base = (Directory(str(run), 0o755), Directory(str(tmp_path / "log"), 0o755))
    runtime.save(state, HostRuntime(base, (str(fake / "memory/hc"),)), records, customers)
    return customers


def test_restore_rebuilds_every_customer_from_its_record_and_skips_a_damaged_one(tmp_path: Path) -> None:
    """After a reboot (run dir and cgroups gone) the shipped zip, run by the system python3, brings them back."""
    state = str(tmp_path / "state")
    _records(tmp_path, state)
    data, _ = shipping.engine_zip()
    pyz = tmp_path / "hostctl-engine.pyz"
    pyz.write_bytes(data)
    restore = [shipping.PYTHON, str(pyz), "restore", "--state-dir", state]
    done = subprocess.run(restore, capture_output=True, text=True)
    assert done.returncode == 0, done
    assert "3 customer(s) restored, 0 failed" in done.stdout
    for c in ("alpha", "beta", "gamma"):
        assert (tmp_path / "run" / c).is_dir() and (tmp_path / "log" / c).is_dir()
        assert (tmp_path / "cgroup/memory/hc" / c / "memory.limit_in_bytes").read_text() == "67108864"
    # "reboot": runtime directories and cgroups gone, and beta's record damaged
    subprocess.run(["rm", "-rf", str(tmp_path / "run"), str(tmp_path / "cgroup")], check=True)
    Path(runtime.record_path(state, "beta")).write_text('{"version": 1, "customer": "beta", "dirs": [')
    done = subprocess.run(restore, capture_output=True, text=True)
    assert done.returncode == 1
    assert "2 customer(s) restored, 1 failed" in done.stdout and "beta: FAILED:" in done.stderr
    assert (tmp_path / "run" / "alpha").is_dir() and (tmp_path / "run" / "gamma").is_dir()
    assert not (tmp_path / "run" / "beta").exists()
    assert (tmp_path / "cgroup/memory/hc/gamma/memory.limit_in_bytes").read_text() == "67108864"


def test_a_customer_whose_files_stay_live_keeps_its_record_and_gets_its_limits_back_after_a_reboot(tmp_path: Path) -> None:
    """gamma is not among the customers the job names (a deploy kept it on this host: its new host failed),
    but its vassal stays live here: the engine keeps its record and cgroup, and restore gives it its limits."""
    from hostctl.engine.core import apply as engine_apply
    from hostctl.engine.core.job import Job, Paths
    from hostctl.engine.core.nginx import Nginx

    state = str(tmp_path / "state")
    _records(tmp_path, state)
    assert runtime.restore(state).ok  # the cgroups as the last apply left them
    paths = Paths(*(str(tmp_path / d) for d in ("vassals", "nginx", "run", "log")), state)
    live = Manifest({f"{paths.emperor_dir}/{c}_web.ini": Entry(sha256(c), "vassal", c, "web") for c in ("alpha", "beta", "gamma")})
    job = Job(paths, Nginx(), "127.0.0.1:1", manifest=live, customers=("alpha", "beta"))
    engine_apply.execute(job)
    assert Path(runtime.record_path(state, "gamma")).is_file()
    subprocess.run(["rm", "-rf", str(tmp_path / "run"), str(tmp_path / "cgroup")], check=True)  # "reboot"
    done = runtime.restore(state)
    assert done.ok and done.customers == ["alpha", "beta", "gamma"], done
    assert (tmp_path / "cgroup/memory/hc/gamma/memory.limit_in_bytes").read_text() == "67108864"
    assert (tmp_path / "run" / "gamma").is_dir()


def test_the_zip_is_built_once_per_content_and_carries_only_the_engine(tmp_path: Path) -> None:
    import io
    import zipfile

    data, digest = shipping.engine_zip()
    assert shipping.engine_zip() == (data, digest) and len(digest) == 32
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    assert names[:3] == ["__main__.py", "hostctl/__init__.py", "hostctl/engine/__init__.py"]
    assert sorted(names[3:]) == sorted(f"hostctl/engine/core/{p.name}" for p in ENGINE.glob("*.py"))
    payload = shipping.payload({"version": 1})
    head, _, rest = payload.partition(b"\n")
    assert int(head) == len(data) and rest[:len(data)] == data and json.loads(rest[len(data):]) == {"version": 1}


def test_departed_customers_and_purge_records(tmp_path: Path) -> None:
    """Who the engine stops for good (no vassal left, not held back), and purges handed over by a deploy."""
    from hostctl.engine.core import stopping

    assert stopping.departed(["gone", "half", "held"], ["half"], ["held"]) == ["gone"]
    assert stopping.user_of_vassal("[uwsgi]\nuid = hc-gone\ngid = hc-gone\n") == "hc-gone"
    state = str(tmp_path / "state")
    assert stopping.record_purges(state, {}) == {}
    assert stopping.record_purges(state, {"gone": "hc-gone"}) == {"gone": "hc-gone"}
    assert stopping.record_purges(state, {"other": "hc-other"}) == {"gone": "hc-gone", "other": "hc-other"}
    assert oct(os.stat(os.path.join(state, stopping.PURGE_FILE)).st_mode & 0o777) == "0o600"


def _fails_on_broken(blocks) -> "CheckResult":
    """A stand-in for `nginx -t`: a block that says BROKEN cannot be loaded (as a log path under a file)."""
    from hostctl.engine.core.nginx import CheckResult

    bad = sorted(name for name, text in blocks.items() if "BROKEN" in text)
    return CheckResult(not bad, f'nginx: [emerg] open() "/var/log/hostctl/x" failed (20: Not a directory) in {bad}' if bad else "")


def _live(tmp_path: Path) -> tuple[str, str, Manifest]:
    nginx_dir, state = tmp_path / "nginx", tmp_path / "state"
    nginx_dir.mkdir()
    blocks = {"alpha_web.conf": "server { BROKEN }\n", "alpha_api.conf": "server { alpha api }\n",
              "beta_web.conf": "server { beta }\n", "operator.conf": "server { operator }\n"}
    for name, text in blocks.items():
        (nginx_dir / name).write_text(text)
    manifest = Manifest({str(nginx_dir / n): Entry(sha256(t), "nginx", n.split("_")[0], n.split("_")[1][:-5])
                         for n, t in blocks.items() if n != "operator.conf"})
    return str(nginx_dir), str(state), manifest


def test_at_boot_only_the_blocks_of_a_customer_that_fail_on_their_own_are_set_aside(tmp_path: Path) -> None:
    """nginx must start for everyone else (the fleet's reboot with one customer's log directory broken)."""
    from hostctl.engine.core import vetting

    nginx_dir, state, manifest = _live(tmp_path)
    broken, after = vetting.vet_live(nginx_dir, state, manifest, _fails_on_broken)
    assert set(broken) == {"alpha"} and "Not a directory" in broken["alpha"] and after.ok
    assert sorted(os.listdir(nginx_dir)) == ["beta_web.conf", "operator.conf"]
    assert sorted(os.listdir(vetting.held_dir(state))) == ["alpha_api.conf", "alpha_web.conf"]  # all of alpha's blocks
    assert vetting.vet_live(nginx_dir, state, manifest, _fails_on_broken) == ({}, after)  # nothing more to do


def test_at_apply_a_customer_whose_live_blocks_fail_on_their_own_is_suspended_and_the_change_goes_ahead(tmp_path: Path) -> None:
    from hostctl.engine.core import vetting
    from hostctl.engine.core.plan import Change

    nginx_dir, _state, manifest = _live(tmp_path)
    change = Change("update", f"{nginx_dir}/beta_web.conf", "nginx", "beta", "web", "server { beta }\n", "server { beta v2 }\n", 0o644)
    candidates = vetting.Candidates(vetting.live_blocks(nginx_dir), [change], manifest)
    rejections = vetting.nginx_problems(candidates, set(), _fails_on_broken)
    assert [r.customer for r in rejections] == ["alpha"], rejections
    assert "its live server blocks fail nginx -t on their own" in rejections[0].reason
    assert sorted(candidates.suspended["alpha"]) == ["alpha_api.conf", "alpha_web.conf"]
    assert "beta v2" in candidates.with_held({"alpha"})["beta_web.conf"]


def test_the_host_record_carries_how_restore_vets_server_blocks_and_reads_an_older_one() -> None:
    record = HostRuntime((Directory("/run/hostctl", 0o755),), ("/sys/fs/cgroup/hostctl",), (),
                         runtime.NginxCheck("/etc/hostctl/nginx", "nginx", "events {}\n"))
    assert HostRuntime.from_json(record.to_json()) == record
    older = json.dumps({"version": 1, "dirs": [["/run/hostctl", 493, None, None]], "cgroup_parents": []})
    assert HostRuntime.from_json(older).nginx is None
