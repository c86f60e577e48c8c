"""Show a plan: one line per file, diffs with secrets hidden, the summary. Pure.

The plan values and ``make_plan`` live in the engine (``hostctl/engine/core/plan.py``:
a server plans a rollback itself). ``make_plan(desired, actual)`` returns a ``Plan`` value: every file to create,
update or remove, with before/after content, drift (a hand edit to a file
hostctl wrote) and conflicts (a file hostctl did not write sitting where it
wants to write). Nothing here touches the disk or the clock.
"""

from __future__ import annotations

import difflib
import re
from hostctl.engine.core.plan import Action, Change, Conflict, Plan, make_plan  # noqa: F401  (the values live in the engine)

# env lines, and the hooks that set env after the privilege drop in a per-customer vassal (vassal.ini.j2)
_ENV_LINE = re.compile(r"^((?:env = |hook-as-user = !putenv:)[A-Za-z_][A-Za-z0-9_]*=).*$", re.M)


def redact(text: str) -> str:
    """Hide env values (often secrets) from anything shown to a terminal."""
    return _ENV_LINE.sub(r"\1***", text)


def _env_keys_changed(before: str, after: str) -> list[str]:
    def env(text: str) -> dict[str, str]:
        return dict(line[6:].split("=", 1) for line in text.splitlines() if line.startswith("env = ") and "=" in line[6:])

    b, a = env(before), env(after)
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def diff(change: Change) -> str:
    """A unified diff of one change with env values redacted."""
    before = redact(change.before or "")
    after = redact(change.after or "")
    lines = list(difflib.unified_diff(before.splitlines(keepends=True), after.splitlines(keepends=True),
                                      fromfile=change.path if change.before is not None else "/dev/null",
                                      tofile=change.path if change.after is not None else "/dev/null"))
    text = "".join(line if line.endswith("\n") else line + "\n" for line in lines)
    if change.before is not None and change.after is not None:
        hidden = _env_keys_changed(change.before, change.after)
        if hidden:
            text += f"  (env values changed, not shown: {', '.join(hidden)})\n"
    if change.mode_only:
        text += f"  (mode becomes {change.mode:o})\n"
    return text


def render_plan(plan: Plan, show_diff: bool = True) -> str:
    """The plan as text for a terminal: one line per file, then diffs, then the summary."""
    symbols = {"create": "+", "update": "~", "delete": "-"}
    out = []
    for conflict in plan.conflicts:
        out.append(f"! {conflict.path}: {conflict.reason}")
    for change in plan.changes:
        note = "  (drift: edited outside hostctl; apply overwrites it)" if change.drift else ""
        out.append(f"{symbols[change.action]} {change.path}{note}")
    if show_diff:
        for change in plan.changes:
            out.append("")
            out.append(diff(change).rstrip("\n"))
    if plan.changes:
        out.append("")
        if plan.nginx_changed:
            out.append("nginx: a server block changes, so nginx is checked (nginx -t) and reloaded.")
        else:
            out.append("nginx: no server block changes; nginx is not reloaded.")
    out.append(plan.summary())
    return "\n".join(out) + "\n"
