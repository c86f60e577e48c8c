"""Show status rows: a table for people, JSON for scripts. Pure: rows in, text out."""

from __future__ import annotations

import json
from typing import Callable, Iterable

from hostctl.status.rows import Row

JSON_VERSION = 1


def size(n: int | None) -> str:
    """Bytes in binary units, short: 512B, 12.3M, 1.5G."""
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "K", "M", "G", "T"):
        if value < 1024 or unit == "T":
            return f"{int(value)}{unit}" if unit == "B" else f"{value:.1f}{unit}" if value < 100 else f"{value:.0f}{unit}"
        value /= 1024
    return f"{n}B"  # pragma: no cover


def duration(seconds: int | None) -> str:
    """42s, 7m03s, 5h12m, 3d04h."""
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def _num(value: object) -> str:
    return "-" if value is None else str(value)


def _workers(r: Row) -> str:
    if r.workers is None:
        return "-"
    return f"{r.workers}" if not r.busy_workers else f"{r.workers} ({r.busy_workers} busy)"


def _memory(r: Row) -> str:
    if r.memory_bytes is None:
        return "-"
    if r.memory_limit_bytes is None:
        return f"{size(r.memory_bytes)}/none"
    return f"{size(r.memory_bytes)}/{size(r.memory_limit_bytes)} ({100 * r.memory_bytes // r.memory_limit_bytes}%)"


COLUMNS: tuple[tuple[str, Callable[[Row], str]], ...] = (
    ("CUSTOMER", lambda r: r.customer),
    ("APP", lambda r: r.app),
    ("STATE", lambda r: r.state),
    ("WORKERS", _workers),
    ("REQS", lambda r: _num(r.requests)),
    ("AVG-RT", lambda r: "-" if r.avg_rt_ms is None else f"{r.avg_rt_ms:g}ms"),
    ("LISTENQ", lambda r: _num(r.listen_queue)),
    ("RSS", lambda r: size(r.rss_bytes)),
    ("CPU%", lambda r: "-" if r.cpu_percent is None else f"{r.cpu_percent:.1f}"),
    ("MEM/LIMIT", _memory),
    ("RELOADS", lambda r: _num(r.reloads)),
    ("RESPAWNS", lambda r: _num(r.respawns)),
    ("OOM", lambda r: _num(r.oom_kills)),
    ("UPTIME", lambda r: duration(r.uptime_seconds)),
    ("DOMAINS", lambda r: ",".join(r.domains)),
)
RIGHT = frozenset({"WORKERS", "REQS", "AVG-RT", "LISTENQ", "RSS", "CPU%", "RELOADS", "RESPAWNS", "OOM", "UPTIME"})


def table_lines(found: Iterable[Row]) -> list[str]:
    """The header and one line per row, columns aligned (a HOST column first for a multi-host inventory)."""
    found = list(found)
    columns = ((("HOST", lambda r: r.host or "-"),) if any(r.host for r in found) else ()) + COLUMNS
    cells = [[title for title, _ in columns]] + [[get(r) for _, get in columns] for r in found]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    out = []
    for line in cells:
        parts = [cell.rjust(w) if title in RIGHT else cell.ljust(w) for (title, _), cell, w in zip(columns, line, widths)]
        out.append("  ".join(parts).rstrip())
    return out


def notes(found: Iterable[Row], unread: Iterable[str] = ()) -> list[str]:
    """Why unhealthy rows are in their state, and everything that could not be read."""
    out = [f"could not read {what}" for what in unread]
    for r in found:
        who = f"{r.host}: {r.customer}/{r.app}" if r.host else f"{r.customer}/{r.app}"
        if not r.healthy or r.state == "quarantined":
            out.append(f"{who}: {r.state}: {r.detail}")
        out.extend(f"{who}: could not read {p}" for p in r.problems)
    return out


def table(found: list[Row], unread: Iterable[str] = ()) -> str:
    """The table, then the notes. ``unread``: what could not be read that belongs to no single row."""
    lines = table_lines(found)
    extra = notes(found, unread)
    if extra:
        lines += [""] + extra
    return "\n".join(lines) + "\n"


def to_json(found: list[Row], emperor_error: str | None, problems: list[str], healthy: bool) -> str:
    """``{"version", "healthy", "emperor_error", "problems", "apps": [row, ...]}``; row keys are ``status.JSON_KEYS``."""
    doc = {"version": JSON_VERSION, "healthy": healthy, "emperor_error": emperor_error, "problems": problems,
           "apps": [r.as_dict() for r in found]}
    return json.dumps(doc, indent=2) + "\n"
