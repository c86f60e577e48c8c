"""The package layout holds: no import cycles between modules, and no package imports a package above it.

Every ``import`` in ``hostctl/**/*.py`` counts, wherever it is written: at the top,
inside a function, under ``if TYPE_CHECKING:``. The rules are the "May import:"
lines of each subpackage's ``__init__`` docstring, restated in ``MAY_IMPORT`` (a
test checks that both say the same). Standard library only.

Run as a script (``python tests/unit/test_architecture.py [REPO]``) to print the
graph's size: modules, import arrows, modules caught in cycles.
"""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

# Which part of hostctl may import which. A part is a subpackage (hostctl/engine/...)
# or a top-level module (hostctl/errors.py, hostctl/__main__.py). Importing the package root ``hostctl``
# itself (for ``__version__``) is allowed everywhere.
FOUNDATION = {"errors"}
MAY_IMPORT: dict[str, set[str]] = {
    "errors": set(),
    "inventory": FOUNDATION,
    "plan": {"errors", "inventory"},
    "render": FOUNDATION | {"inventory", "plan"},
    "engine": FOUNDATION | {"inventory", "plan", "render"},
    "acme": FOUNDATION | {"inventory", "plan", "render", "engine"},
    "targets": FOUNDATION | {"inventory", "plan", "render", "engine", "acme"},
    "status": FOUNDATION | {"inventory", "plan", "render", "engine", "acme", "targets"},
    "cli": FOUNDATION | {"inventory", "plan", "render", "engine", "acme", "targets", "status"},
    "fabfile": FOUNDATION | {"inventory", "plan", "render", "engine", "acme", "targets", "status", "cli"},
    "__main__": {"cli"},
    # The engine's core (the steps that change a server, shipped to servers as a zip) imports only the
    # standard library and itself (tests/unit/test_engine.py checks the standard library part); like
    # errors, everyone may import it.
    "engine.core": set(),
}
EVERYONE_MAY_IMPORT = {"hostctl", "engine.core"}


def modules(repo: Path) -> dict[str, Path]:
    """``{dotted name: file}`` for every module of the hostctl package (a package is its ``__init__``)."""
    found = {}
    for path in sorted((repo / "hostctl").rglob("*.py")):
        parts = list(path.relative_to(repo).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The hostctl modules that module ``name`` imports, anywhere in its file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            # ``from pkg import mod`` imports the module pkg.mod; ``from mod import name`` imports mod
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # import a.b.c where only a.b is ours: a.b
                target = target.rpartition(".")[0]
            if target and target != name:
                out.add(target)
    return out


def graph(repo: Path = REPO) -> dict[str, set[str]]:
    known = modules(repo)
    return {name: imports(name, path, known) for name, path in known.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def part(module: str) -> str:
    """The part of hostctl a module belongs to: its subpackage, or itself for a top-level module."""
    pieces = module.split(".")
    if pieces[1:3] == ["engine", "core"]:
        return "engine.core"
    return pieces[1] if len(pieces) > 1 else "hostctl"


def upward(edges: dict[str, set[str]]) -> list[str]:
    """Imports the layering forbids, as ``a -> b (part_a may not import part_b)``."""
    bad = []
    for source, targets in sorted(edges.items()):
        mine = part(source)
        for target in sorted(targets):
            theirs = part(target)
            if theirs == mine or (theirs in EVERYONE_MAY_IMPORT and mine != "engine.core"):
                continue
            if theirs not in MAY_IMPORT.get(mine, set()):
                bad.append(f"{source} -> {target} ({mine} may not import {theirs})")
    return bad


def size(edges: dict[str, set[str]]) -> str:
    return (f"{len(edges)} modules, {sum(len(t) for t in edges.values())} import arrows, "
            f"{len(cycles(edges))} cycles ({sum(len(c) for c in cycles(edges))} modules in them)")


def test_no_import_cycles() -> None:
    edges = graph()
    print(size(edges))
    found = cycles(edges)
    assert not found, "import cycles (each line: modules that import each other, directly or not):\n" + "\n".join(
        " <-> ".join(c) for c in found)


def test_no_upward_imports() -> None:
    bad = upward(graph())
    assert not bad, "imports against the layering (see each package's __init__ docstring):\n" + "\n".join(bad)


def test_every_part_has_a_rule() -> None:
    parts = {part(m) for m in graph()} - {"hostctl"}
    assert "engine.core" in parts
    assert parts <= set(MAY_IMPORT), f"no layering rule for {sorted(parts - set(MAY_IMPORT))}: add one to MAY_IMPORT"


def test_init_docstrings_state_the_rules() -> None:
    """Each subpackage's docstring says what it may import, the same as MAY_IMPORT."""
    for init in sorted((REPO / "hostctl").glob("*/__init__.py")):
        name = init.parent.name
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))) or ""
        assert "May import" in doc, f"{init}: the docstring does not say what {name} may import"
        said = doc.split("May import", 1)[1].split(".\n", 1)[0].split("Never", 1)[0]
        if said.lstrip(": ").startswith("anything"):
            stated = set(MAY_IMPORT) - {name, "__main__", "engine.core"} - ({"fabfile"} if name == "cli" else set())
        else:
            stated = set(re.findall(r"hostctl\.(\w+)", said))
        assert stated == MAY_IMPORT[name], f"{init}: docstring says {sorted(stated)}, MAY_IMPORT says {sorted(MAY_IMPORT[name])}"


def _top_names(path: Path) -> set[str]:
    """Names a module defines at top level (also under ``if``/``try``), the way ``module.name`` finds them."""
    names = {"__file__", "__name__", "__doc__", "__spec__", "__path__", "__dict__", "__all__", "__version__"}
    todo = list(ast.parse(path.read_text(encoding="utf-8")).body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
        elif isinstance(node, (ast.If, ast.Try, ast.With, ast.For)):
            todo.extend(ast.iter_child_nodes(node))
        elif isinstance(node, ast.excepthandler):
            todo.extend(node.body)
    return names


def missing_attributes(repo: Path, files: list[Path]) -> list[str]:
    """``module.name`` uses (module bound by an import of a hostctl module) where the module has no ``name``.

    Catches a name that moved to another module, used through its old module (e.g.
    ``placement.host_identity`` after host_identity moved to render.identity). A
    function's own parameter or variable with the module's name hides it (not checked).
    """
    known = modules(repo)
    defined = {name: _top_names(path) | {m.rpartition(".")[2] for m in known if m.rpartition(".")[0] == name}
               for name, path in known.items()}
    problems = []
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        bound: dict[str, str] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for a in node.names:
                    if f"{node.module}.{a.name}" in known:
                        bound[a.asname or a.name] = f"{node.module}.{a.name}"
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.asname and a.name in known:
                        bound[a.asname] = a.name

        def visit(node: ast.AST, hidden: frozenset[str]) -> None:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                args = node.args
                own = {a.arg for a in args.args + args.kwonlyargs + args.posonlyargs}
                own |= {a.arg for a in (args.vararg, args.kwarg) if a}
                own |= {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
                hidden = hidden | own
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in bound
                    and node.value.id not in hidden and node.attr not in defined[bound[node.value.id]]):
                problems.append(f"{path.relative_to(repo)}:{node.lineno}: {bound[node.value.id]} has no {node.attr!r}")
            for child in ast.iter_child_nodes(node):
                visit(child, hidden)

        visit(tree, frozenset())
    return problems


def test_module_attributes_exist() -> None:
    """Every ``module.name`` through an imported hostctl module names something that module defines (code, tests, bench)."""
    files = [path for part in ("hostctl", "tests", "bench") for path in sorted((REPO / part).rglob("*.py"))]
    problems = missing_attributes(REPO, files)
    assert not problems, "names used through a module that does not define them:\n" + "\n".join(problems)


def test_the_graph_sees_every_kind_of_import(tmp_path: Path) -> None:
    """Function-level, TYPE_CHECKING and ``import a.b`` imports are arrows too; a cycle and an upward import are caught."""
    pkg = tmp_path / "hostctl"
    (pkg / "render").mkdir(parents=True)
    (pkg / "engine").mkdir()
    for init in (pkg / "__init__.py", pkg / "render" / "__init__.py", pkg / "engine" / "__init__.py"):
        init.write_text("")
    (pkg / "render" / "files.py").write_text("def f():\n    from hostctl.engine import apply\n")
    (pkg / "engine" / "apply.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import hostctl.render.files\n")
    edges = graph(tmp_path)
    assert edges["hostctl.render.files"] == {"hostctl.engine.apply"}
    assert edges["hostctl.engine.apply"] == {"hostctl.render.files"}
    assert cycles(edges) == [["hostctl.engine.apply", "hostctl.render.files"]]
    assert upward(edges) == ["hostctl.render.files -> hostctl.engine.apply (render may not import engine)"]


if __name__ == "__main__":
    repo = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else REPO
    edges = graph(repo)
    print(size(edges))
    for component in cycles(edges):
        print("cycle:", " <-> ".join(component))
