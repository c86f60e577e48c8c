"""Load an inventory directory into validated, fully resolved values.

``load(root)`` reads ``hostctl.yaml`` and ``customers/*.yaml``, validates every
file against the schema in ``schema.py``, applies ``defaults:``, resolves
relative paths against the inventory directory and checks what spans files
(a domain used twice). It raises one ``InventoryError`` listing every problem,
each with file, line and field. It reads files and nothing else.

``load(root, partial=True)`` holds back instead: a customer whose own file is
broken is left out of ``customers`` and listed in ``held`` with its problems,
so everyone else can still be planned, applied and shown. Only what is shared
(hostctl.yaml, a domain or Unix user claimed by two customers) still raises.
"""

from __future__ import annotations

import os
from difflib import get_close_matches
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import pydantic

from hostctl.errors import InventoryError, Problem
from hostctl.inventory import domains, envfile, placement, privatetmp, staticfiles, tls_settings, values
from hostctl.inventory.schema import TUNING_FIELDS, App, Customer, Limits, Settings
from hostctl.inventory.spec import CUSTOMERS_DIR, AppSpec, CustomerSpec, Inventory
from hostctl.inventory.yamlsource import Source, parse

SETTINGS_FILE = "hostctl.yaml"
MAX_USER_NAME = 32


# --- pydantic errors -> problems -------------------------------------------------

_MESSAGES = {
    "missing": "is required",
    "int_type": "{input!r} is not a whole number",
    "int_parsing": "{input!r} is not a whole number",
    "float_type": "{input!r} is not a number",
    "string_type": "{input!r} is not a string",
    "dict_type": "must be a mapping (key: value), not {kind}",
    "model_type": "must be a mapping (key: value), not {kind}",
    "list_type": "must be a list, not {kind}",
    "bool_type": "{input!r} is not true or false",
    "literal_error": "{input!r} is not one of {expected}",
}


def _describe(error: dict[str, Any], model: type[pydantic.BaseModel], loc: tuple) -> str:
    kind = error["type"]
    value = error.get("input")
    if kind == "extra_forbidden":
        known = _known_keys(model, loc[:-1])
        guess = get_close_matches(str(loc[-1]), known, n=1)
        hint = f" (did you mean {guess[0]!r}?)" if guess else f" (known keys: {', '.join(sorted(known))})" if known else ""
        return f"unknown key {loc[-1]!r}{hint}"
    if kind == "value_error":
        return str(error["ctx"]["error"])
    if kind in _MESSAGES:
        return _MESSAGES[kind].format(input=value, kind=_type_name(value), expected=error.get("ctx", {}).get("expected", ""))
    ctx = error.get("ctx", {})
    if kind == "greater_than_equal":
        return f"{value!r} is too small (at least {ctx['ge']})"
    if kind == "greater_than":
        return f"{value!r} is too small (more than {ctx['gt']})"
    if kind == "less_than_equal":
        return f"{value!r} is too large (at most {ctx['le']})"
    if kind == "too_short":
        return f"must have at least {ctx['min_length']} entr{'y' if ctx['min_length'] == 1 else 'ies'}"
    if kind == "string_pattern_mismatch":
        return f"{value!r} does not match {ctx['pattern']!r}"
    return error["msg"]


def _type_name(value: Any) -> str:
    return {list: "a list", dict: "a mapping", str: "a string", int: "a number", float: "a number",
            bool: "true/false", type(None): "empty"}.get(type(value), type(value).__name__)


def _known_keys(model: type[pydantic.BaseModel], loc: tuple) -> list[str]:
    """Field names of the model found at ``loc`` (dict keys in loc are skipped over)."""
    current: Any = model
    for part in loc:
        if not (isinstance(current, type) and issubclass(current, pydantic.BaseModel)):
            break
        info = current.model_fields.get(part) if isinstance(part, str) else None
        if info is None:
            continue
        current = _inner_model(info.annotation)
    if isinstance(current, type) and issubclass(current, pydantic.BaseModel):
        return list(current.model_fields)
    return []


def _inner_model(annotation: Any) -> Any:
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _inner_model(arg)
        if found is not None:
            return found
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return annotation
    return None


def _validate(model: type[pydantic.BaseModel], source: Source, data: Any) -> tuple[Any, list[Problem]]:
    try:
        return model.model_validate(data), []
    except pydantic.ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False):
            loc = tuple(part for part in error["loc"]
                        if not (isinstance(part, str) and (part.startswith("function-") or part == "[key]")))
            problems.append(source.problem(loc, _describe(error, model, loc)))
        return None, problems


# --- loading -----------------------------------------------------------------------


def _real_path(path: Path, real_dirs: dict[Path, Path]) -> Path:
    """``path.resolve()``, resolving each directory once (thousands of customer files share one)."""
    if os.path.islink(path):
        return path.resolve()
    parent = real_dirs.get(path.parent)
    if parent is None:
        parent = real_dirs[path.parent] = path.parent.resolve()
    return parent / path.name


def _read(root: Path, rel: str, overlay: Mapping[str, bytes],
          real_dirs: dict[Path, Path] | None = None) -> tuple[Source | None, list[Problem]]:
    if rel in overlay:
        return parse(overlay[rel], rel)
    real_dirs = {} if real_dirs is None else real_dirs
    try:
        real = _real_path(root / rel, real_dirs)
    except (RuntimeError, OSError):  # Python 3.11 raises RuntimeError for a symlink loop
        return None, [Problem(rel, None, "", "is a symbolic link that loops")]
    real_root = real_dirs.get(root) or real_dirs.setdefault(root, root.resolve())
    if not real.is_relative_to(real_root):
        return None, [Problem(rel, None, "", f"is a symbolic link pointing outside the inventory ({real})")]
    try:
        text = real.read_bytes()
    except IsADirectoryError:
        return None, [Problem(rel, None, "", "is a directory, not a customer file")]
    except OSError as exc:
        return None, [Problem(rel, None, "", f"cannot be read: {exc.strerror}")]
    return parse(text, rel)


def _absolute(root: Path, value: str) -> str:
    return os.path.normpath(os.path.join(root, value))


def _resolve_settings(root: Path, settings: Settings, source: Source) -> tuple[Settings, list[Problem]]:
    problems = []
    updates = {}
    for key in ("emperor_dir", "nginx_dir", "run_dir", "log_dir", "state_dir"):
        resolved = _absolute(root, getattr(settings, key))
        try:
            values.path(resolved)
        except ValueError:
            problems.append(source.problem((key,), f"resolves to {resolved!r}, which contains characters that cannot be written to nginx or uWSGI configuration"))
        updates[key] = resolved
    updates["tls"], found = tls_settings.resolve_settings(settings.tls, lambda value: _absolute(root, value), source)
    problems += found
    roots = [_absolute(root, value) for value in settings.isolation.static_roots]
    updates["isolation"] = settings.isolation.model_copy(update={"static_roots": roots})
    return settings.model_copy(update=updates), problems


def _resolve_app(root: Path, app: App, defaults: Any, secrets: Mapping[str, str] | None = None) -> App:
    updates: dict[str, Any] = {}
    for key in TUNING_FIELDS:
        default = getattr(defaults, key)
        if key not in app.model_fields_set and default is not None:
            updates[key] = default
    updates["env"] = {**defaults.env, **(secrets or {}), **app.env}
    chdir = _absolute(root, app.chdir) if app.chdir else None
    updates["chdir"] = chdir
    if app.virtualenv:
        updates["virtualenv"] = _absolute(root, app.virtualenv)
    if app.root:
        updates["root"] = _absolute(root, app.root)
    entry = values.wsgi_file(app.wsgi)
    if entry:  # a released app's file is in its live release
        base = os.path.join(updates["root"], "current") if app.root else chdir
        file = _absolute(Path(base) if base else root, entry[0])
        updates["wsgi"] = file if entry[1] is None else f"{file}:{entry[1]}"
    updates["static"] = {prefix: _absolute(root, target) for prefix, target in app.static.items()}
    if app.tls is not None and app.tls.certificate and app.tls.key:
        updates["tls"] = app.tls.model_copy(update={"certificate": _absolute(root, app.tls.certificate),
                                                    "key": _absolute(root, app.tls.key)})
    return app.model_copy(update=updates)


def _merge_limits(own: Limits, defaults: Limits) -> Limits:
    return Limits(**{k: getattr(own, k) if k in own.model_fields_set else getattr(defaults, k) for k in Limits.model_fields})


def _check_resolved_paths(app: App, source: Source, base: tuple) -> list[Problem]:
    problems = []
    candidates = [("chdir",), ("virtualenv",), ("root",), ("wsgi",)] + [("static", prefix) for prefix in app.static]
    for key in candidates:
        value = getattr(app, key[0]) if len(key) == 1 else app.static[key[1]]
        if key == ("wsgi",):
            entry = values.wsgi_file(value)
            value = entry[0] if entry else None  # a module name is no path
        if value is None:
            continue
        try:
            values.path(value)
        except ValueError:
            problems.append(source.problem(base + key, f"resolves to {value!r}, which contains characters that cannot be written to nginx or uWSGI configuration"))
    return problems


def _static_problems(app: App, roots: list[str], source: Source, base: tuple) -> list[Problem]:
    """A static target outside the app's chdir and ``isolation.static_roots`` would let nginx serve any file."""
    problems = []
    for prefix, target in app.static.items():
        if staticfiles.allowed_root(target, (app.chdir, app.root), roots) is None:
            where = " or ".join(filter(None, [f"the app's chdir ({app.chdir})" if app.chdir else None,
                                              f"the app's root ({app.root})" if app.root else None,
                                              f"isolation.static_roots ({', '.join(roots)})" if roots else None]))
            problems.append(source.problem(base + ("static", prefix), (
                f"{target!r} is not under {where or 'a chdir (the app has none) or isolation.static_roots (none set)'}; "
                "nginx would serve whatever its user can read there")))
    return problems


def customer_files(root: Path, extra: Iterable[str] = ()) -> tuple[list[str], list[Problem]]:
    """Relative paths of the customer files, plus problems with names in customers/."""
    directory = root / CUSTOMERS_DIR
    names = {e.name for e in os.scandir(directory)} if directory.is_dir() else set()
    names |= {rel.split("/", 1)[1] for rel in extra}
    files, problems = [], []
    for entry_name in sorted(names):
        rel = f"{CUSTOMERS_DIR}/{entry_name}"
        if entry_name.startswith("."):
            continue
        stem, dot, ext = entry_name.rpartition(".")
        if not dot or ext not in ("yaml", "yml"):
            problems.append(Problem(rel, None, "", "is not a customer file (expected customers/NAME.yaml)"))
            continue
        if ext == "yml":
            problems.append(Problem(rel, None, "", f"customer files end in .yaml (rename it to {CUSTOMERS_DIR}/{stem}.yaml)"))
            continue
        try:
            values.name(stem, "customer name")
        except ValueError as exc:
            problems.append(Problem(rel, None, "", f"the file name: {exc}"))
            continue
        files.append(rel)
    return files, problems


def _load_settings(root: Path, overlay: Mapping[str, bytes], sources: dict[str, Source]) -> tuple[Settings | None, list[Problem]]:
    source, problems = _read(root, SETTINGS_FILE, overlay)
    settings = None
    if source is not None:
        sources[SETTINGS_FILE] = source
        data = {} if source.data is None else source.data
        settings, found = _validate(Settings, source, data)
        problems += found
        if settings is not None:
            settings, found = _resolve_settings(root, settings, source)
            problems += found
    return settings, problems


def load_settings(root: Path | str) -> Inventory:
    """Only hostctl.yaml, as an inventory without customers: for `hostctl rollback`, which must
    work while a customer file is broken."""
    root = Path(os.path.abspath(root))
    if not (root / SETTINGS_FILE).is_file():
        raise InventoryError([Problem(str(root), None, "", f"is not an inventory: {SETTINGS_FILE} is missing (create one with `hostctl init`)")])
    sources: dict[str, Source] = {}
    settings, problems = _load_settings(root, {}, sources)
    if problems or settings is None:
        raise InventoryError(problems)
    return Inventory(root, settings, (), sources)


def is_own(problem: Problem) -> bool:
    """Is this problem confined to one customer's own file (so only that customer is held back)?"""
    return problem.file.startswith(CUSTOMERS_DIR + "/") and "/" not in problem.file[len(CUSTOMERS_DIR) + 1:]


def load(root: Path | str, overlay: Mapping[str, bytes] | None = None, partial: bool = False) -> Inventory:
    """Load and validate the inventory at ``root``; raise ``InventoryError`` listing every problem.

    ``overlay`` maps relative paths to contents that stand in for (or add to) the
    files on disk: how a new customer is validated before it is written.
    ``partial``: customers with problems in their own file are held back (``Inventory.held``)
    instead; only shared problems raise.
    """
    root = Path(os.path.abspath(root))
    overlay = overlay or {}
    problems: list[Problem] = []
    if not (root / SETTINGS_FILE).is_file():
        raise InventoryError([Problem(str(root), None, "", f"is not an inventory: {SETTINGS_FILE} is missing (create one with `hostctl init`)")])
    sources: dict[str, Source] = {}
    settings, found = _load_settings(root, overlay, sources)
    problems += found

    real_dirs: dict[Path, Path] = {}
    files, found = customer_files(root, (rel for rel in overlay if rel.startswith(CUSTOMERS_DIR + "/")))
    problems += found
    customers = []
    for rel in files:
        source, found = _read(root, rel, overlay, real_dirs)
        problems += found
        if source is None:
            continue
        sources[rel] = source
        if source.data is None:
            problems.append(Problem(rel, 1, "", "is empty; a customer needs at least 'apps:'"))
            continue
        customer, found = _validate(Customer, source, source.data)
        problems += found
        if customer is None or settings is None:
            continue
        name = rel[len(CUSTOMERS_DIR) + 1 : -len(".yaml")]
        user = customer.user or settings.isolation.user_prefix + name
        if len(user) > MAX_USER_NAME:
            problems.append(source.problem((), f"the derived Unix user {user!r} is longer than {MAX_USER_NAME} characters; set 'user:'"))
        secrets: dict[str, str] = {}
        if customer.env_file:
            env_path = _absolute(root, customer.env_file)
            try:
                secrets = envfile.read(env_path)
            except envfile.EnvFileError as exc:
                problems.append(source.problem(("env_file",), f"{env_path} {exc}"))
        apps = []
        run_dir, log_dir = placement.runtime_dirs(settings, customer.host or settings.default_host)
        for app_name, app in customer.apps.items():
            resolved = _resolve_app(root, app, settings.defaults, secrets)
            problems += _check_resolved_paths(resolved, source, ("apps", app_name))
            problems += _static_problems(resolved, settings.isolation.static_roots, source, ("apps", app_name))
            if resolved.private_tmp and "" in privatetmp.kept(privatetmp.app_paths(resolved, run_dir, log_dir)):
                problems.append(source.problem(("apps", app_name, "private_tmp"), (
                    "a private /tmp would hide '/tmp' from the app (a directory it needs is /tmp itself); "
                    "move it out of /tmp or leave private_tmp unset")))
            problems += tls_settings.check_app(resolved, source, ("apps", app_name))
            apps.append(AppSpec(name, app_name, resolved, source.line_of(("apps", app_name))))
        limits = _merge_limits(customer.limits, settings.defaults.limits)
        customers.append(CustomerSpec(name, rel, user, limits, tuple(apps), customer.host or settings.default_host))

    shared, own = _cross_checks(customers, sources)
    problems += own
    found_shared, found_own = domain_checks(sources, settings.isolation.reserved_domains if settings else ())
    shared += found_shared
    problems += found_own
    if settings is not None:
        problems += placement.check(settings, customers, sources)
    if not partial and (problems or shared):
        raise InventoryError(problems + shared)
    shared += [p for p in problems if not is_own(p)]
    if shared or settings is None:
        raise InventoryError(problems + [p for p in shared if p not in problems])
    return Inventory(root, settings, tuple(customers), sources).hold(problems)


def _raw_domains(source: Source) -> Iterator[tuple[str, int, str]]:
    """(app, index, domain) from a customer file's raw data, valid or not, for cross-file checks."""
    apps = source.data.get("apps") if isinstance(source.data, dict) else None
    if not isinstance(apps, dict):
        return
    for app_name, app in apps.items():
        domains = app.get("domains") if isinstance(app, dict) else None
        if isinstance(domains, list):
            for index, domain in enumerate(domains):
                if isinstance(domain, str):
                    yield app_name, index, domain


def _claims(sources: Mapping[str, Source]) -> list[domains.Claim]:
    """Every domain of every customer file, in file order, as written (valid or not)."""
    claims = []
    for rel, source in sorted(sources.items()):
        if not rel.startswith(CUSTOMERS_DIR + "/"):
            continue
        name = rel[len(CUSTOMERS_DIR) + 1 : -len(".yaml")]
        for app_name, index, domain in _raw_domains(source):
            path = ("apps", app_name, "domains", index)
            claims.append(domains.Claim(domain, name, rel, path, source.line_of(path)))
    return claims


def _cross_checks(customers: list[CustomerSpec], sources: dict[str, Source]) -> tuple[list[Problem], list[Problem]]:
    """(problems shared by two customers, problems within one customer's file)."""
    problems, own = [], []
    seen: dict[str, domains.Claim] = {}
    for claim in _claims(sources):
        other = seen.setdefault(claim.domain, claim)
        if other is not claim:
            owner = "this customer" if other.customer == claim.customer else f"customer {other.customer!r}"
            (own if other.customer == claim.customer else problems).append(
                sources[claim.file].problem(claim.path, f"{claim.domain!r} is already used by {owner} ({other.where})"))
    users: dict[str, str] = {}
    for customer in customers:
        if customer.user in users:
            problems.append(sources[customer.file].problem(("user",), f"Unix user {customer.user!r} is already used by customer {users[customer.user]!r}"))
        users.setdefault(customer.user, customer.name)
    return problems, own


def domain_checks(sources: Mapping[str, Source], reserved: Iterable[str] = ()) -> tuple[list[Problem], list[Problem]]:
    """Names no customer may claim: another customer's under a wildcard (shared: it takes two customers),
    and the host's own (``reserved``; the customer's own problem). Returns (shared, own)."""
    claims = _claims(sources)
    shared, own = [], []
    for later, earlier in domains.wildcard_clashes(claims):
        wildcard, name = (later, earlier) if later.domain.startswith("*.") and not (
            earlier.domain.startswith("*.") and domains.covers(earlier.domain, later.domain)) else (earlier, later)
        shared.append(sources[later.file].problem(later.path, (
            f"{wildcard.domain!r} of customer {wildcard.customer!r} ({wildcard.where}) covers {name.domain!r} "
            f"of customer {name.customer!r} ({name.where}); a wildcard may only cover its own customer's names")))
    for claim in claims:
        taken = domains.reserved_clash(claim.domain, reserved)
        if taken:
            what = "is" if taken == claim.domain else f"covers {taken!r},"
            own.append(sources[claim.file].problem(claim.path, f"{claim.domain!r} {what} a name of this host (isolation.reserved_domains)"))
    return shared, own
