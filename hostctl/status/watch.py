"""`hostctl status --watch`: the status table refreshed in place, in a curses screen.

Keys: m sorts by memory (RSS), c by CPU%, n by name, q quits. The screen only
draws; reading and deciding stay in ``status_collect`` and ``status``, passed
in as ``refresh`` so this loop holds no state of its own beyond the sort order.
"""

from __future__ import annotations

import curses
import time
from typing import Callable

from hostctl.status import formatting as status_format, rows as status
from hostctl.status.rows import Row

Refresh = Callable[[], tuple[list[Row], list[str]]]  # rows, and what could not be read
KEYS = {ord("m"): "memory", ord("c"): "cpu", ord("n"): "name"}


def screen_lines(found: list[Row], unread: list[str], sort: str, interval: float, clock: str) -> list[str]:
    """What one refresh shows: a title, the sorted table and the notes (pure, for tests)."""
    ordered = status.sort_rows(found, sort)
    bad = sum(1 for r in found if not r.healthy)
    title = (f"hostctl status  {clock}  every {interval:g} s  [sorted by {sort}]  "
             f"{len(found)} app(s), {bad} unhealthy    m: memory  c: cpu  n: name  q: quit")
    lines = [title, ""] + status_format.table_lines(ordered)
    extra = status_format.notes(ordered, unread)
    return lines + ([""] + extra if extra else [])


def run(refresh: Refresh, sort: str, interval: float) -> None:
    curses.wrapper(_loop, refresh, sort, interval)


def _loop(screen: "curses.window", refresh: Refresh, sort: str, interval: float) -> None:
    try:
        curses.curs_set(0)
    except curses.error:  # a terminal that cannot hide its cursor
        pass
    screen.timeout(100)
    found, unread = refresh()
    next_at = time.monotonic() + interval
    while True:
        _draw(screen, screen_lines(found, unread, sort, interval, time.strftime("%H:%M:%S")))
        key = screen.getch()
        if key in (ord("q"), ord("Q"), 27):
            return
        if key in KEYS:
            sort = KEYS[key]
            continue
        if time.monotonic() >= next_at:
            found, unread = refresh()
            next_at = time.monotonic() + interval


def _draw(screen: "curses.window", lines: list[str]) -> None:
    height, width = screen.getmaxyx()
    screen.erase()
    for y, line in enumerate(lines[: max(0, height - 1)]):
        screen.addnstr(y, 0, line, max(0, width - 1), curses.A_BOLD if y == 0 else curses.A_NORMAL)
    screen.refresh()
