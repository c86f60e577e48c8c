"""Golden-file rendering tests: tests/unit/render/<case>/ holds an inventory and the expected files.

Expected files live in <case>/expected/<identity>/ with the inventory directory
written as @ROOT@. Regenerate after an intended template change with
HOSTCTL_REGENERATE=1 and review the diff.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
import yaml

from hostctl.inventory import loader as inventory
from hostctl.render import templates
from hostctl.render.files import render
from hostctl.render.identity import Identity

CASES = Path(__file__).parent / "render"
IDENTITIES = {"invoker": Identity(per_customer=False), "per-customer": Identity(per_customer=True, nginx_group="www-data")}


def _render(case: Path, identity: Identity, tmp_path: Path) -> dict[str, str]:
    root = tmp_path / "inv"
    shutil.copytree(case, root, ignore=shutil.ignore_patterns("expected"))
    inv = inventory.load(root)
    # ready_certs.yaml (optional): which certificates exist, as certs.ready() would report them
    ready_file = case / "ready_certs.yaml"
    ready = {str(root / path): frozenset(names) for path, names in yaml.safe_load(ready_file.read_text()).items()} if ready_file.exists() else None
    files = render(inv, identity, templates.environment(inv.root), ready)
    return {os.path.relpath(path, root): _unplaced(f.content.replace(str(root), "@ROOT@")) for path, f in files.items()}


def _unplaced(content: str) -> str:
    """Without the private /tmp's mount of the host's /tmp entry the test inventory happens to lie in
    (pytest's base temp: it depends on the runner; tests/unit/test_shared_resources.py covers those lines)."""
    return "".join(line for line in content.splitlines(keepends=True)
                   if not re.fullmatch(r"mount-as-root = none /tmp/\S+ @ROOT@/\S+ bind\n", line))


@pytest.mark.parametrize("identity", IDENTITIES)
@pytest.mark.parametrize("case", sorted(p.name for p in CASES.iterdir() if p.is_dir()))
def test_render_matches_golden_files(case: str, identity: str, tmp_path: Path) -> None:
    got = _render(CASES / case, IDENTITIES[identity], tmp_path)
    expected_dir = CASES / case / "expected" / identity
    if os.environ.get("HOSTCTL_REGENERATE"):
        shutil.rmtree(expected_dir, ignore_errors=True)
        for rel, content in got.items():
            (expected_dir / rel).parent.mkdir(parents=True, exist_ok=True)
            (expected_dir / rel).write_text(content)
    want = {str(p.relative_to(expected_dir)): p.read_text() for p in expected_dir.rglob("*") if p.is_file()}
    assert sorted(got) == sorted(want)
    for rel in got:
        assert got[rel] == want[rel], f"{rel}\nGOT:\n{got[rel]}\nWANT:\n{want[rel]}"


def test_rendered_files_are_private_vassals_and_public_server_blocks(tmp_path: Path) -> None:
    root = tmp_path / "inv"
    shutil.copytree(CASES / "basic", root, ignore=shutil.ignore_patterns("expected"))
    inv = inventory.load(root)
    files = render(inv, IDENTITIES["invoker"], templates.environment(inv.root))
    modes = {os.path.basename(p): (f.kind, oct(f.mode)) for p, f in files.items()}
    assert modes == {
        "acme_web.ini": ("vassal", "0o640"), "acme_api.ini": ("vassal", "0o640"),
        "acme_web.conf": ("nginx", "0o644"), "acme_api.conf": ("nginx", "0o644"),
    }


def test_inventory_templates_override_packaged_ones(tmp_path: Path) -> None:
    root = tmp_path / "inv"
    shutil.copytree(CASES / "basic", root, ignore=shutil.ignore_patterns("expected"))
    (root / "templates").mkdir()
    (root / "templates" / "server.conf.j2").write_text("# custom {{ customer.name }}/{{ app.name }}\n")
    inv = inventory.load(root)
    files = render(inv, IDENTITIES["invoker"], templates.environment(inv.root))
    assert files[str(root / "nginx" / "acme_web.conf")].content == "# custom acme/web\n"
    assert files[str(root / "vassals" / "acme_web.ini")].content.startswith("; Managed by hostctl")
