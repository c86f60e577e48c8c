"""Reading vassals back the way uWSGI does (core/ini.c plus its three expansion stages)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from hostctl.inventory import loader as inventory
from hostctl.render import layout, templates
from hostctl.render.escape import INI_PLACEHOLDERS, ini
from hostctl.render.files import render
from hostctl.render.identity import Identity
from hostctl.render.readback import expand, intended, parse_ini, path_problems, server_names, vassal_problems


@pytest.mark.parametrize(("raw", "value", "expanded"), [
    ("plain", "plain", False),
    ("100%%", "100%", False),
    ("%%(hc_dollar)(HOME)", "$(HOME)", False),
    ("%%(hc_at)(/etc/hostname)", "@(/etc/hostname)", False),
    ("%%%%(hc_dollar)(X)", "%$(X)", False),
    ("%(socket)", "%(socket)", True),
    ("$(HOME)", "$(HOME)", True),
    ("@(/etc/passwd)", "@(/etc/passwd)", True),
    ("%n", "%n", True),
    ("100%", "100%", False),  # a lone trailing % is literal
])
def test_expand(raw: str, value: str, expanded: bool) -> None:
    got, why = expand(raw)
    assert got == value and (why is not None) == expanded, why


@pytest.mark.parametrize("value", ["plain", "100%", "%%", "$(HOME)", "@(/etc/hostname)", "%$(X)", "a=b=c", "; not a comment",
                                   "# not a comment", "[uwsgi]", "\tlead", "x %d %n %(", "$", "@", "%"])
def test_escaped_values_read_back_exactly(value: str) -> None:
    try:
        written = ini(value)
    except ValueError:
        assert "%(" in value
        return
    [d] = [d for d in parse_ini(f"[uwsgi]\n{INI_PLACEHOLDERS}\nenv = K={written}\n") if d.key == "env"]
    assert d.value == f"K={value}" and d.expanded is None


def test_parse_ini_like_uwsgi() -> None:
    text = "; c\n# c\n[other]\nsocket = /elsewhere\n[uwsgi]\n  socket =  /a.sock \r\nenv=A=1\n\nnovalue\n"
    assert [(d.line, d.key, d.value) for d in parse_ini(text)] == [(6, "socket", "/a.sock"), (7, "env", "A=1"), (9, "novalue", "")]


def test_vassal_problems_catch_injected_lines() -> None:
    want = {"env": ["A=1"], "socket": ["/r/a/web.sock"]}
    good = "[uwsgi]\nsocket = /r/a/web.sock\nenv = A=1\n"
    assert vassal_problems(good, want) == []
    injected = "[uwsgi]\nsocket = /r/a/web.sock\nenv = A=1\nenv = B=2\n"
    assert vassal_problems(injected, want) == ["env: reads back as ['A=1', 'B=2'], expected ['A=1']"]
    expanding = "[uwsgi]\nsocket = /r/a/web.sock\nenv = A=%(socket)\n"
    problems = vassal_problems(expanding, {"env": ["A=%(socket)"], "socket": ["/r/a/web.sock"]})
    assert problems == ["line 3: env: '%(socket)' would be expanded as a uWSGI placeholder"]
    assert vassal_problems("[uwsgi]\nSocket Name = x\n", {}) == ["line 2: 'Socket Name' is not a uWSGI option name"]


def test_server_names() -> None:
    text = "server {\n    server_name a.example b.example;\n    # server_name evil.example;\n}\nserver {\n    server_name a.example;\n}\n"
    assert server_names(text) == ["a.example", "b.example", "a.example"]


GOLDEN = Path(__file__).parent / "render"


@pytest.mark.parametrize("per_customer", [False, True])
@pytest.mark.parametrize("case", sorted(p.name for p in GOLDEN.iterdir() if p.is_dir()))
def test_every_golden_render_case_passes_the_read_back(case: str, per_customer: bool, tmp_path: Path) -> None:
    """The packaged templates, as every feature renders them, never get a customer quarantined."""
    root = tmp_path / "inv"
    shutil.copytree(GOLDEN / case, root, ignore=shutil.ignore_patterns("expected"))
    inv = inventory.load(root)
    files = render(inv, Identity(per_customer, "www-data" if per_customer else None), templates.environment(inv.root))
    for customer in inv.customers:
        for app in customer.apps:
            paths = layout.app_paths(inv.settings, customer.name, app.name)
            vassal = files.get(paths.vassal)
            if vassal is not None:
                want = intended(app.config, paths, customer.user if per_customer else None)
                assert vassal_problems(vassal.content, want) == [], (customer.name, app.name)
            assert sorted(set(server_names(files[paths.server_block].content))) == sorted(set(app.config.domains))
            assert path_problems(app.config, paths, inv.settings.run_dir, inv.settings.log_dir) == []
