"""The loaded inventory as values: customers, their apps, the settings and where each came from.

``loader.load`` builds these; everything downstream (placement, render, engine) reads them.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable, Mapping

from hostctl.errors import Problem
from hostctl.inventory.schema import App, Limits, Settings
from hostctl.inventory.yamlsource import Source, format_path

CUSTOMERS_DIR = "customers"


@dataclass(frozen=True)
class AppSpec:
    """One app of one customer, with defaults applied and paths made absolute."""

    customer: str
    name: str
    config: App
    line: int | None = None  # where the app is declared in its customer file

    @property
    def id(self) -> str:
        return f"{self.customer}_{self.name}"


@dataclass(frozen=True)
class CustomerSpec:
    name: str
    file: str  # relative to the inventory root
    user: str  # the Unix user its vassals run as in per-customer mode
    limits: Limits
    apps: tuple[AppSpec, ...]
    host: str | None = None  # multi-host: the server that serves it (see placement.py)


@dataclass(frozen=True)
class Inventory:
    root: Path
    settings: Settings  # with absolute paths
    customers: tuple[CustomerSpec, ...]
    sources: dict[str, Source] = field(default_factory=dict, compare=False, repr=False)
    held: Mapping[str, tuple[Problem, ...]] = field(default_factory=dict, compare=False)  # customer -> its own problems

    def hold(self, problems: Iterable[Problem]) -> "Inventory":
        """This inventory without the customers that ``problems`` (all in customer files) are about."""
        held = {name: list(found) for name, found in self.held.items()}
        for problem in problems:
            held.setdefault(held_key(problem.file), []).append(problem)
        if not held:
            return self
        customers = tuple(c for c in self.customers if c.name not in held)
        return replace(self, customers=customers, held={k: tuple(sorted(v)) for k, v in sorted(held.items())})

    def customer(self, name: str) -> CustomerSpec | None:
        return next((c for c in self.customers if c.name == name), None)

    def apps(self) -> list[AppSpec]:
        return [app for customer in self.customers for app in customer.apps]

    def problem(self, file: str, path: tuple, message: str) -> Problem:
        """A problem located in one of the loaded files (used by checks that run after loading)."""
        source = self.sources.get(file)
        return source.problem(path, message) if source else Problem(file, None, format_path(path), message)


def held_key(file: str) -> str:
    """The customer a problem in ``file`` holds back: ``customers/NAME.yaml`` -> NAME (other names in customers/ as they are)."""
    name = file[len(CUSTOMERS_DIR) + 1:]
    return name[:-len(".yaml")] if name.endswith(".yaml") else file
