"""The Jinja2 environment: packaged templates, overridable per inventory.

Templates ship inside the wheel as ``hostctl/templates``; in a source checkout
they are the repository's top-level ``templates/``. An inventory may override
any of them by putting a file of the same name in its own ``templates/``.
"""

from __future__ import annotations

from pathlib import Path

import jinja2

from hostctl.errors import HostctlError
from hostctl.render import escape

_PACKAGE_DIR = Path(__file__).resolve().parent.parent  # hostctl/


def packaged_templates() -> Path:
    installed = _PACKAGE_DIR / "templates"
    return installed if installed.is_dir() else _PACKAGE_DIR.parent / "templates"


def environment(inventory_root: Path | None = None) -> jinja2.Environment:
    search = [str(packaged_templates())]
    if inventory_root is not None and (inventory_root / "templates").is_dir():
        search.insert(0, str(inventory_root / "templates"))
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(search),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
        # Compiling the templates costs tens of ms on every run; Jinja2 keeps the compiled code in a
        # private per-user directory (0700, owner checked), keyed by each template's source checksum.
        bytecode_cache=_bytecode_cache(),
    )
    env.filters["ini"] = escape.ini
    env.filters["ngx"] = escape.nginx
    return env


def _bytecode_cache() -> jinja2.BytecodeCache | None:
    try:
        return jinja2.FileSystemBytecodeCache()
    except (OSError, RuntimeError):  # no usable private temp directory: compile every time
        return None


def get(env: jinja2.Environment, name: str) -> jinja2.Template:
    try:
        return env.get_template(name)
    except jinja2.TemplateSyntaxError as exc:
        raise HostctlError(f"template {exc.filename or exc.name}:{exc.lineno}: {exc.message}") from exc
    except jinja2.TemplateNotFound as exc:
        raise HostctlError(f"template {name!r} not found in {', '.join(env.loader.searchpath)}") from exc  # type: ignore[union-attr]


def render(template: jinja2.Template, **context: object) -> str:
    try:
        return template.render(**context)
    except escape.EscapeError as exc:
        raise HostctlError(f"template {template.filename}: {exc}") from exc
    except jinja2.TemplateError as exc:
        raise HostctlError(f"template {template.filename}: {exc}") from exc
