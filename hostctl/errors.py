"""Error types shared by every layer, so the CLI can print them the same way.

A ``Problem`` is one located complaint about the inventory (file, line, field);
``InventoryError`` carries all problems of a run so they are reported together.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import click

from hostctl.engine.core.errors import EngineError


class HostctlError(click.ClickException):
    """An error the user can act on: printed as ``Error: message``, exit status 1."""

    exit_code = 1


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with the inventory, located as precisely as we can."""

    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


class InventoryError(HostctlError):
    """The inventory is invalid; nothing was written."""

    def __init__(self, problems: list[Problem]):
        self.problems = sorted(problems, key=lambda p: (p.file, p.line or 0, p.field, p.message))
        count = len(self.problems)
        head = f"the inventory has {count} problem{'s' if count != 1 else ''}; nothing was written:"
        super().__init__("\n".join([head, *("  " + str(p) for p in self.problems)]))


@contextmanager
def from_engine() -> Iterator[None]:
    """Turn the engine's errors (it cannot use click) into ``HostctlError`` with the same message."""
    try:
        yield
    except EngineError as exc:
        raise HostctlError(exc.message) from exc
