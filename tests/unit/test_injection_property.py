"""Property: no inventory value can inject configuration.

Hypothesis throws arbitrary strings (and strings built from injection fragments)
at every inventory field that reaches a rendered file: customer and app names,
domains, the wsgi spec, chdir, virtualenv, static prefixes and paths, env keys
and values. Either validation rejects the inventory with located problems, or
the rendered files parse to exactly the intended directives:

- the vassal, read back as uWSGI reads it (``readback.parse_ini``), has exactly
  the option lines of the same app rendered with harmless values, and every
  inventory value reads back exactly (no ``%(...)``, ``$(...)``, ``@(...)`` or
  ``%x`` expansion);
- the server block, parsed by crossplane (nginx's own grammar, an independent
  parser), has exactly the directive tree of the harmless rendering, with the
  inventory's values as the arguments;
- every path is absolute and normalised, runtime files stay in the customer's
  directories, and the rendered files in the Emperor and nginx directories.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path

import crossplane
import pytest
import yaml
from hypothesis import HealthCheck, Phase, event, given, settings, strategies as st

from hostctl.errors import InventoryError
from hostctl.inventory import loader as inventory
from hostctl.render import layout, readback, templates
from hostctl.render.files import render
from hostctl.render.identity import Identity

EXAMPLES = 500
FRAGMENTS = ["\n", "\r", ";", "{", "}", "#", " ", "\t", "'", '"', "$", "$(HOME)", "@(/etc/passwd)", "%(socket)", "%d", "%%",
             "%", "\\", "=", "[uwsgi]", "\nexec-as-root = id", "; include /etc/passwd;", "} server {", "..", "/../",
             "\x00", "\x7f", "\u2028", "é", "*", ":", "/", ".", "-", "_", "~", "a", "Z", "0"]

nasty = st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=6).map("".join)
anything = st.one_of(st.text(max_size=30), nasty)
LOWER, DIGITS = "abcdefxyz", "0189"


def _word(first: str, rest: str, most: int) -> st.SearchStrategy:
    return st.tuples(st.sampled_from(first), st.text(alphabet=rest, max_size=most)).map("".join)


name_ok = _word(LOWER, LOWER + DIGITS + "-", 10)
label = st.text(alphabet=LOWER + DIGITS, min_size=1, max_size=8)
domain_ok = st.tuples(st.sampled_from(["", "*."]), st.lists(label, min_size=2, max_size=3).map(".".join)).map("".join)
path_ok = st.lists(st.text(alphabet=LOWER + "AZ" + DIGITS + "._+@-", min_size=1, max_size=8), min_size=1, max_size=3).map(
    lambda parts: "/" + "/".join(parts))
module_ok = st.tuples(_word(LOWER + "_", LOWER + DIGITS + "_", 6), st.sampled_from(["", ".mod", ":app", ".m:application"])).map("".join)
prefix_ok = st.lists(st.text(alphabet=LOWER + DIGITS + "._~-", min_size=1, max_size=6), max_size=2).map(
    lambda parts: "/" + "".join(p + "/" for p in parts))
env_key_ok = _word("ABCXYZ_", "ABCXYZ019_", 8)

def some(valid: st.SearchStrategy) -> st.SearchStrategy:
    """Mostly valid values (so that many examples reach rendering), often hostile ones."""
    return st.one_of(valid, valid, valid, valid, valid, valid, anything, st.tuples(valid, anything).map("".join))


def _customers(pick) -> st.SearchStrategy:
    """Customers whose string fields come through ``pick`` (env values are always arbitrary)."""
    apps = st.fixed_dictionaries({
        "domains": st.lists(pick(domain_ok), min_size=1, max_size=3, unique=True),
        "wsgi": pick(st.one_of(module_ok, path_ok.map(lambda p: p + ".py"))),
    }, optional={
        "chdir": pick(path_ok),
        "virtualenv": pick(path_ok),
        "static": st.dictionaries(pick(prefix_ok), pick(path_ok), max_size=2),
        "env": st.dictionaries(pick(env_key_ok), anything, max_size=4),
    })
    return st.tuples(pick(name_ok), st.dictionaries(pick(name_ok), apps, min_size=1, max_size=2))


# Half the examples attack every field (most are rejected by validation), half only the
# free-form env values (which mostly pass validation and so test the rendering).
customers = st.one_of(_customers(some), _customers(lambda valid: valid))


@pytest.fixture(scope="module")
def root() -> Path:
    with tempfile.TemporaryDirectory(prefix="hostctl-prop-") as tmp:
        base = Path(tmp) / "inv"
        (base / "customers").mkdir(parents=True)
        (base / "hostctl.yaml").write_text("emperor_dir: ../vassals\nnginx_dir: ../nginx\nrun_dir: ../run\nlog_dir: ../log\n"
                                           "isolation: {static_roots: [/]}\n")  # any static target (validation has its own cases)
        yield base


def _harmless(app: inventory.AppSpec) -> inventory.AppSpec:
    """The same app with harmless values of the same shape."""
    cfg = app.config
    harmless = cfg.model_copy(update={
        "domains": [f"d{i}.example" for i in range(len(cfg.domains))],
        "wsgi": "/srv/h/app.py" if cfg.wsgi.endswith(".py") else "m:app",
        "chdir": "/srv/h" if cfg.chdir else None,
        "virtualenv": "/srv/venv" if cfg.virtualenv else None,
        "static": {f"/s{i}/": f"/srv/s{i}" for i in range(len(cfg.static))},
        "env": {f"K{i}": "v" for i in range(len(cfg.env))},
    })
    return dataclasses.replace(app, config=harmless)


def _nginx_tree(text: str, directory: str) -> list:
    path = os.path.join(directory, "block.conf")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
    parsed = crossplane.parse(path, single=True, check_ctx=False, check_args=False, comments=False)
    assert parsed["status"] == "ok", parsed["errors"]
    return parsed["config"][0]["parsed"]


def _shape(tree: list) -> list:
    return [(d["directive"], _shape(d.get("block", []))) for d in tree]


def _find(tree: list, name: str) -> list[list[str]]:
    out = []
    for d in tree:
        if d["directive"] == name:
            out.append(d["args"])
        out += _find(d.get("block", []), name)
    return out


@settings(max_examples=EXAMPLES, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink], suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(customer=customers, per_customer=st.booleans())
def test_no_value_injects_configuration(root: Path, customer: tuple[str, dict], per_customer: bool) -> None:
    name, app_map = customer
    if "/" in name or "\x00" in name or name in ("", ".", ".."):
        event("not a possible file name")
        return
    text = yaml.safe_dump({"apps": app_map}, allow_unicode=True)
    try:
        inv = inventory.load(root, overlay={f"customers/{name}.yaml": text.encode("utf-8")})
    except InventoryError as exc:
        for problem in exc.problems:
            assert problem.file == f"customers/{name}.yaml" and problem.message, problem
            assert problem.line is not None or problem.field == "", problem  # field problems carry their line
        event("rejected by validation")
        return
    event("rendered and checked")
    identity = Identity(per_customer=per_customer)
    env = templates.environment(inv.root)
    files = render(inv, identity, env)
    settings_ = inv.settings
    with tempfile.TemporaryDirectory(prefix="hostctl-prop-") as scratch:
        for spec in inv.customers:
            user = spec.user if per_customer else None
            for app in spec.apps:
                paths = layout.app_paths(settings_, spec.name, app.name)
                assert os.path.dirname(paths.vassal) == settings_.emperor_dir
                assert os.path.dirname(paths.server_block) == settings_.nginx_dir
                benign_inv = dataclasses.replace(inv, customers=(dataclasses.replace(spec, apps=(_harmless(app),)),))
                benign = render(benign_inv, identity, env)

                vassal = files[paths.vassal].content
                assert readback.vassal_problems(vassal, readback.intended(app.config, paths, user)) == []
                got_keys = [d.key for d in readback.parse_ini(vassal)]
                assert got_keys == [d.key for d in readback.parse_ini(benign[paths.vassal].content)]
                assert readback.path_problems(app.config, paths, settings_.run_dir, settings_.log_dir) == []

                tree = _nginx_tree(files[paths.server_block].content, scratch)
                assert _shape(tree) == _shape(_nginx_tree(benign[paths.server_block].content, scratch))
                assert _find(tree, "server_name") == [list(app.config.domains)]
                own = [args for args in _find(tree, "location") if args[0] != "^~"]  # not the ACME challenge path
                assert own == [[prefix] for prefix in app.config.static] + [["/"]]
                assert _find(tree, "alias") == [[target + "/"] for target in app.config.static.values()]
                assert _find(tree, "uwsgi_pass") == [["unix:" + paths.socket]]
                assert _find(tree, "access_log") == [[paths.access_log]]
