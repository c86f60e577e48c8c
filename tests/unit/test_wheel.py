"""The templates ship inside the wheel and are found there (not only in a source checkout)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_wheel_contains_and_uses_templates(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(REPO)],
                   check=True, capture_output=True)
    [wheel] = tmp_path.glob("hostctl-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        zf.extractall(tmp_path / "site")
    shipped = {Path(p).name for p in (REPO / "templates").iterdir()}
    assert {f"hostctl/templates/{name}" for name in shipped} <= names
    assert "hostctl/fabfile/fabfile.py" in names  # multi-host: `fab -r <hostctl/fabfile> deploy`
    # Import hostctl from the unpacked wheel only, and render from its own templates.
    code = ("import hostctl.render.templates as t; p = t.packaged_templates(); "
            "print(p); print(t.environment().get_template('vassal.ini.j2').filename)")
    out = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(tmp_path / 'site')!r}); {code}"],
                         check=True, capture_output=True, text=True).stdout.split()
    assert out[0] == str(tmp_path / "site" / "hostctl" / "templates")
    assert out[1].startswith(str(tmp_path / "site" / "hostctl" / "templates"))
