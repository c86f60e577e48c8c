"""Subcommands imported only when they are used.

Some commands pull in heavy libraries (deploy and bootstrap: paramiko and
fabric; certs: cryptography and acme). Importing them for every `hostctl`
run cost more than apply's own work at 1,000 customers, so the group names
them up front and imports a command's module only when that command runs or
its help is shown.
"""

from __future__ import annotations

import importlib
from typing import Callable

import click


class LazyGroup(click.Group):
    """A click group whose ``lazy`` subcommands are ``name -> "module:attribute"``, imported on first use."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.lazy: dict[str, str] = {}
        self.on_add: Callable[[click.Command], None] | None = None  # called for every subcommand, lazy or not

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        if self.on_add is not None:
            self.on_add(cmd)
        super().add_command(cmd, name)

    def add_lazy(self, name: str, target: str) -> None:
        self.lazy[name] = target

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.lazy))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy and cmd_name not in self.commands:
            module, _, attribute = self.lazy[cmd_name].partition(":")
            self.add_command(getattr(importlib.import_module(module), attribute), cmd_name)
        return super().get_command(ctx, cmd_name)
