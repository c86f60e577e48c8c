"""The app commands: `hostctl restart`, `hostctl run`, `hostctl release` (see targets/apps.py and releases.py)."""

from __future__ import annotations

import sys

import click

from hostctl.inventory import loader as inventory_mod
from hostctl.targets import apps


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


@click.command()
@click.argument("customer")
@click.option("--app", help="The app whose environment to use (needed when the customer has several).")
@click.option("--host", help="Multi-host: run on this server (default: the customer's).")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_context
def run(ctx: click.Context, customer: str, app: str | None, host: str | None, command: tuple[str, ...]) -> None:
    """Run COMMAND as CUSTOMER: its user, cgroup, environment, virtualenv and directory; exits with its status.

    Example: hostctl run acme --app web -- python manage.py migrate
    """
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


@click.command()
@click.argument("customer")
@click.option("--app", help="The app to release (default: the customer's only app with 'root:').")
@click.option("--source", metavar="PATH|GIT-URL[@REF]", help="The code: a directory, or a git repository and ref.")
@click.option("--list", "list_", is_flag=True, help="List the releases on each server and which one is live.")
@click.option("--rollback", is_flag=False, flag_value="", default=None, metavar="[ID]",
              help="Switch back to release ID (default: the one before the live one).")
@click.option("--host", "hosts", multiple=True, metavar="NAME", help="Multi-host: only this server (repeatable).")
@click.pass_context
def release(ctx: click.Context, customer: str, app: str | None, source: str | None, list_: bool,
            rollback: str | None, hosts: tuple[str, ...]) -> None:
    """Put new code live for CUSTOMER's app on every server it is placed on: build, hooks, switch, reload, health check.

    The previous release stays live when anything before the switch fails, and is switched back to
    when the reload or the health check after it fails. See the README's Apps section.
    """
    if sum((source is not None, list_, rollback is not None)) != 1:
        raise click.UsageError("give exactly one of --source, --list and --rollback")
    inv = _inventory(ctx)
    spec = apps.customer_of(inv, customer)
    one = apps.released_app(spec, app)
    targets = apps.release_hosts(inv, spec, hosts)
    op = "list" if list_ else "rollback" if rollback is not None else "release"
    payload, origin = (None, None)
    if op == "release":
        payload, origin = apps.package(source)
        click.echo(f"{one.id}: releasing {origin} ({len(payload) / 1024:.0f} KiB) to {_where(targets)}", err=True)
    rid = apps.release_id()

    def make(host: str | None) -> dict:
        req = apps.release_request(inv, spec, one, host, op)
        req.update(release_id=rid, to=rollback or None)
        return req

    results = apps.on_hosts(inv, targets, make, payload, sys.stderr)
    failed = False
    for host, outcome in results.items():
        label = f"{one.id}" + (f" on {host}" if host else "")
        if isinstance(outcome, BaseException):
            failed = True
            message = outcome.format_message() if hasattr(outcome, "format_message") else f"{type(outcome).__name__}: {outcome}"
            click.echo(f"{label}: {message}")
            continue
        status, result = outcome
        failed |= status != 0
        if op == "list":
            for rid_ in result.get("releases", []):
                click.echo(f"{label}: {rid_}{'  (live)' if rid_ == result.get('live') else ''}")
            if not result.get("releases"):
                click.echo(f"{label}: no releases yet")
        elif status != 0:
            click.echo(f"{label}: {result.get('error', 'failed')}")
        elif op == "rollback":
            click.echo(f"{label}: {result['live']} is live (was {result.get('previous')})")
        else:
            pruned = f"; pruned {', '.join(result['pruned'])}" if result.get("pruned") else ""
            click.echo(f"{label}: {result['release']} is live (previous: {result.get('previous') or 'none'}){pruned}")
    if failed:
        ctx.exit(1)


def _where(targets: list[str | None]) -> str:
    return "this server" if targets == [None] else ", ".join(str(t) for t in targets)
