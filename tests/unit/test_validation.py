"""Validation errors name file, line and field: one case per entry in cases/validation.yaml."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from hostctl.errors import InventoryError
from hostctl.inventory import loader as inventory

# Every cases/*validation.yaml file (core, multi-host placement, ...) runs through the same test.
CASES = [dict(case, name=f"{path.stem}: {case['name']}")
         for path in sorted((Path(__file__).parent / "cases").glob("*validation.yaml"))
         for case in yaml.safe_load(path.read_text())]
MINIMAL_SETTINGS = "emperor_dir: vassals\n"


def write_inventory(root: Path, settings: str | None, customers: dict[str, str | bytes]) -> Path:
    (root / "customers").mkdir(parents=True)
    (root / "hostctl.yaml").write_text(settings if settings is not None else MINIMAL_SETTINGS)
    for name, text in customers.items():
        data = text if isinstance(text, bytes) else text.encode()
        (root / "customers" / name).write_bytes(data)
    return root


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_validation_errors(tmp_path: Path, case: dict) -> None:
    root = write_inventory(tmp_path / "inv", case.get("settings"), case.get("customers", {}))
    with pytest.raises(InventoryError) as caught:
        inventory.load(root)
    got = [str(p) for p in caught.value.problems]
    assert got == case["errors"], "\nGOT:\n  " + "\n  ".join(got) + "\nWANT:\n  " + "\n  ".join(case["errors"])


def test_symlink_outside_inventory(tmp_path: Path) -> None:
    root = write_inventory(tmp_path / "inv", None, {})
    outside = tmp_path / "outside.yaml"
    outside.write_text("apps:\n  web: {domains: [a.example], wsgi: a:b}\n")
    os.symlink(outside, root / "customers" / "acme.yaml")
    with pytest.raises(InventoryError) as caught:
        inventory.load(root)
    assert [str(p) for p in caught.value.problems] == [
        f"customers/acme.yaml: is a symbolic link pointing outside the inventory ({outside})"
    ]


def test_missing_settings_file(tmp_path: Path) -> None:
    with pytest.raises(InventoryError, match="is not an inventory: hostctl.yaml is missing"):
        inventory.load(tmp_path)


def test_defaults_apply_and_paths_resolve(tmp_path: Path) -> None:
    root = write_inventory(tmp_path / "inv", (
        "run_dir: ../run\n"
        "defaults:\n  processes: 4\n  harakiri: 5\n  env: {A: from-defaults, B: from-defaults}\n"
        "  limits: {memory: 1G, pids: 64}\n"
    ), {"acme.yaml": (
        "limits: {memory: 128M}\n"
        "apps:\n  web:\n    domains: [a.example]\n    wsgi: app.py\n    chdir: code\n    processes: 2\n"
        "    env: {B: own}\n    static: {/s/: code/static}\n"
    )})
    inv = inventory.load(root)
    app = inv.apps()[0].config
    assert app.processes == 2 and app.harakiri == 5  # own value wins, the default fills the gap
    assert app.env == {"A": "from-defaults", "B": "own"}
    assert app.chdir == str(root / "code") and app.wsgi == str(root / "code" / "app.py")
    assert app.static == {"/s/": str(root / "code" / "static")}
    assert inv.settings.run_dir == str(tmp_path / "run")
    limits = inv.customers[0].limits
    assert (limits.memory, limits.pids, limits.cpu) == (128 << 20, 64, None)
    assert inv.customers[0].user == "hc-acme"


def test_symlink_loop_and_directory(tmp_path: Path) -> None:
    root = write_inventory(tmp_path / "inv", None, {})
    os.symlink("loop.yaml", root / "customers" / "loop.yaml")
    (root / "customers" / "dir.yaml").mkdir()
    with pytest.raises(InventoryError) as caught:
        inventory.load(root)
    assert [str(p) for p in caught.value.problems] == [
        "customers/dir.yaml: is a directory, not a customer file",
        "customers/loop.yaml: is a symbolic link that loops",
    ]


@pytest.mark.parametrize("wsgi, ok", [
    ("app.py", True), ("app.py:app", True), ("/srv/a/wsgi.py:application", True), ("pkg.mod:app", True), ("pkg.mod", True),
    ("app.py:", False), ("app.py:1app", False), ("app.py:a.b", False), ("app py:app", False), ("app.py:app:x", False),
])
def test_wsgi_entry_points(wsgi: str, ok: bool) -> None:
    from hostctl.inventory import values

    if ok:
        assert values.wsgi(wsgi) == wsgi
    else:
        with pytest.raises(ValueError):
            values.wsgi(wsgi)
    assert values.wsgi_file("app.py:app") == ("app.py", "app") and values.wsgi_file("app.py") == ("app.py", None)
    assert values.wsgi_file("pkg.mod:app") is None
