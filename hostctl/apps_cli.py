"""The app commands: `hostctl restart`, `hostctl run`, `hostctl release` (see apps.py and releases.py)."""

from __future__ import annotations

import sys

import click

from hostctl import apps, inventory as inventory_mod


def _inventory(ctx: click.Context) -> inventory_mod.Inventory:
    return inventory_mod.load(ctx.obj["inventory"])


@click.command()
@click.argument("customer")
@click.option("--app", help="Only this app (default: all of the customer's apps).")
@click.option("--hard", is_flag=True, help="Stop the app and start it again instead of a graceful reload.")
@click.pass_context
def restart(ctx: click.Context, customer: str, app: str | None, hard: bool) -> None:
    """Reload CUSTOMER's apps: gracefully (workers finish their requests, no request is refused) or --hard.

    The customer can do the same itself: `touch <app dir>/reload.touch` (see the README's Apps section).
    """
    inv = _inventory(ctx)
    spec = apps.customer_of(inv, customer)
    host = apps.target_host(inv, spec, None)
    for one in apps.apps_of(spec, app):
        if not one.config.enabled:
            click.echo(f"{one.id}: stopped in the inventory (enabled: false); not restarted")
            continue
        req = apps.request(inv, spec, one, host, "restart")
        req["hard"] = hard
        apps.perform(inv, host, req)
        where = f" on {host}" if host else ""
        click.echo(f"{one.id}{where}: {'stopped and started again' if hard else 'reloading gracefully'}")


@click.command(context_settings={"allow_interspersed_args": False})
@click.argument("customer")
@click.option("--app", help="The app whose environment to use (needed when the customer has several).")
@click.option("--host", help="Multi-host: run on this server (default: the customer's).")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_context
def run(ctx: click.Context, customer: str, app: str | None, host: str | None, command: tuple[str, ...]) -> None:
    """Run COMMAND as CUSTOMER: its user, cgroup, environment, virtualenv and directory; exits with its status.

    Example: hostctl run acme --app web -- python manage.py migrate
    """
    if command[:1] == ("--",):  # `run acme -- cmd`: click keeps the separator after the first argument
        command = command[1:]
    if not command:
        raise click.UsageError("give the command after '--'")
    inv = _inventory(ctx)
    spec = apps.customer_of(inv, customer)
    where = apps.target_host(inv, spec, host)
    (one,) = apps.apps_of(spec, app, one=True)
    req = apps.request(inv, spec, one, where, "run")
    req["argv"] = list(command)
    sys.stdout.flush()
    status, _ = apps.perform(inv, where, req)
    ctx.exit(status)
