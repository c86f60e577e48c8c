"""hostctl's Fabric tasks: deploy, plan, status, bootstrap and release for a multi-host inventory.

Run with ``fab -r <this directory> TASK [--inventory DIR] [--host NAME ...]``.
The hosts come from the inventory's ``hosts:``, not from fab's ``-H``; every
task does what the matching ``hostctl`` command does (``targets/deploy.py``,
``targets/bootstrap.py``) and exits 1 when any host failed.
"""

from __future__ import annotations

import os

from fabric import task
from invoke.exceptions import Exit

from hostctl.errors import HostctlError
from hostctl.inventory import loader as inventory_mod
from hostctl.targets import bootstrap as bootstrap_mod, deploy as deploy_mod

HELP = {
    "inventory": "Inventory directory (default: $HOSTCTL_INVENTORY or ./inventory).",
    "host": "Only this host (repeatable; default: all hosts of the inventory).",
}


def _inventory(inventory: str | None) -> str:
    return inventory or os.environ.get("HOSTCTL_INVENTORY", "inventory")


def _report(c, inventory: str | None, host: list[str] | None, dry_run: bool, show_plan: bool = True) -> None:
    try:
        report = deploy_mod.deploy(_inventory(inventory), host or (), dry_run=dry_run)
    except HostctlError as exc:
        raise Exit(f"Error: {exc.message}", code=1) from None
    print(deploy_mod.render_report(report, show_plan=show_plan), end="")
    if not report.ok:
        raise Exit(code=1)


@task(iterable=["host"], help={**HELP, "dry_run": "Only show each host's plan."})
def deploy(c, inventory=None, host=None, dry_run=False):
    """Deploy to every host in parallel, sending only what changed."""
    _report(c, inventory, host, dry_run)


@task(iterable=["host"], help=HELP)
def plan(c, inventory=None, host=None):
    """Show what deploy would change on each host (reads every host over SSH)."""
    _report(c, inventory, host, True)


@task(iterable=["host"], help=HELP)
def status(c, inventory=None, host=None):
    """One line per host: reachable, in sync, or how many files differ."""
    _report(c, inventory, host, True, show_plan=False)


@task(help={"inventory": HELP["inventory"], "host": "The host to prepare.",
            "files_only": "Only directories and system files: no apt-get, no systemctl."})
def bootstrap(c, host, inventory=None, files_only=False):
    """Prepare a new Debian/Ubuntu host: nginx, uWSGI + Python plugin, the Emperor's unit, the nginx include."""
    try:
        inv = inventory_mod.load(_inventory(inventory))
        output = bootstrap_mod.run(inv, host, packages=not files_only, services=not files_only)
    except HostctlError as exc:
        raise Exit(f"Error: {exc.message}", code=1) from None
    print(output, end="")


@task(help={"inventory": HELP["inventory"], "customer": "The customer whose app to release.",
            "app": "The app (default: the customer's only app with 'root:').",
            "source": "The code: a directory, or a git repository with an optional @REF.",
            "rollback": "Instead of new code: switch back to this release ID ('previous': the one before the live one).",
            "host": "Only this server (repeatable; default: every server the customer is placed on)."},
      iterable=["host"])
def release(c, customer, source=None, app=None, rollback=None, inventory=None, host=None):
    """Release new code (or roll back) on every server the customer is placed on, like `hostctl release`."""
    import click

    from hostctl.cli.main import cli

    args = ["-i", _inventory(inventory), "release", customer] + (["--app", app] if app else [])
    args += ["--source", source] if source else ["--rollback", "" if rollback == "previous" else rollback] if rollback else []
    for name in host or ():
        args += ["--host", name]
    try:
        status = cli.main(args=args, prog_name="hostctl", standalone_mode=False)
    except click.ClickException as exc:
        raise Exit(f"Error: {exc.format_message()}", code=1) from None
    if status:
        raise Exit(code=int(status))
