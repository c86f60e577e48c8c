"""The command line: a thin click layer over the pipeline and the effects.

Exit codes, decided once: 0 success (and, for ``plan --exit-code``, no
changes); 1 any error, including usage errors; 2 ``plan --exit-code`` found
changes (as terraform's -detailed-exitcode).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from hostctl import __version__, customers, scaffold
from hostctl.errors import HostctlError


def _inventory_root(ctx: click.Context) -> Path:
    return Path(ctx.obj["inventory"])


def _say(message: str) -> None:
    click.echo(message, err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-i", "--inventory", envvar="HOSTCTL_INVENTORY", default="inventory", show_default=True,
              type=click.Path(file_okay=False), help="Inventory directory (or $HOSTCTL_INVENTORY).")
@click.version_option(__version__, prog_name="hostctl")
@click.pass_context
def cli(ctx: click.Context, inventory: str) -> None:
    """Render customers' uWSGI vassals and nginx server blocks from a YAML inventory and apply them."""
    ctx.ensure_object(dict)
    ctx.obj["inventory"] = inventory


@cli.command()
@click.option("--production", is_flag=True, help="Use system paths (/etc/hostctl, /run/hostctl, ...) and systemd's nginx.")
@click.pass_context
def init(ctx: click.Context, production: bool) -> None:
    """Create a new inventory: hostctl.yaml, customers/, and system/ (systemd unit, Emperor and nginx snippets)."""
    root = _inventory_root(ctx)
    for path in scaffold.init(root, production):
        click.echo(f"created {path}")
    click.echo(f"Next: hostctl -i {root} add-customer NAME --domain DOMAIN --wsgi MODULE:CALLABLE")


@cli.command("add-customer")
@click.argument("name")
@click.option("--domain", "domains", multiple=True, required=True, help="A domain the app serves (repeatable).")
@click.option("--wsgi", required=True, help="'package.module:callable' or a path to a .py file.")
@click.option("--chdir", help="Directory the app runs in.")
@click.option("--virtualenv", help="The app's virtualenv (made with the Python uWSGI embeds).")
@click.option("--processes", type=int, help="Worker processes.")
@click.option("--memory", help="Memory limit for the customer, e.g. 256M.")
@click.option("--env", "env", multiple=True, metavar="K=V", help="An environment variable (repeatable).")
@click.pass_context
def add_customer(ctx: click.Context, name: str, domains: tuple[str, ...], wsgi: str, chdir: str | None,
                 virtualenv: str | None, processes: int | None, memory: str | None, env: tuple[str, ...]) -> None:
    """Add customer NAME with one app 'web' (writes customers/NAME.yaml)."""
    pairs = {}
    for item in env:
        key, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="'--env'")
        pairs[key] = value
    path = customers.add(_inventory_root(ctx), name, list(domains), wsgi, chdir=chdir, virtualenv=virtualenv,
                         processes=processes, memory=memory, env=pairs)
    click.echo(f"created {path}; run `hostctl plan` to see what apply would do")


@cli.command("remove-customer")
@click.argument("name")
@click.pass_context
def remove_customer(ctx: click.Context, name: str) -> None:
    """Remove customer NAME's file; the next apply stops its apps."""
    path = customers.remove(_inventory_root(ctx), name)
    click.echo(f"removed {path}; run `hostctl apply` to stop its apps")


@cli.command()
@click.pass_context
def validate(ctx: click.Context) -> None:
    """Check the inventory, its templates and the apps' virtualenvs; exit 1 on any problem."""
    from hostctl import pipeline

    prepared = pipeline.prepare(_inventory_root(ctx))
    apps = len(prepared.inventory.apps())
    click.echo(f"OK: {len(prepared.inventory.customers)} customers, {apps} apps, {len(prepared.desired)} files rendered.")


@cli.command()
@click.option("--exit-code", is_flag=True, help="Exit 2 when there are changes, 0 when there are none.")
@click.option("--no-diff", is_flag=True, help="List the files only.")
@click.pass_context
def plan(ctx: click.Context, exit_code: bool, no_diff: bool) -> None:
    """Show what apply would change: files added, changed (as diffs, secrets hidden) and removed."""
    from hostctl import pipeline
    from hostctl.plan import render_plan

    prepared = pipeline.prepare(_inventory_root(ctx))
    click.echo(render_plan(prepared.plan, show_diff=not no_diff), nl=False)
    if prepared.plan.conflicts:
        raise HostctlError("files hostctl did not create are in the way (marked '!'); apply would refuse")
    if exit_code and not prepared.plan.empty:
        ctx.exit(2)


@cli.command()
@click.option("--lock-timeout", type=float, default=60.0, show_default=True,
              help="Seconds to wait for another apply to finish (0: fail at once).")
@click.pass_context
def apply(ctx: click.Context, lock_timeout: float) -> None:
    """Write the changed vassals and server blocks atomically; reload nginx only if a server block changed."""
    from hostctl import apply as apply_mod
    from hostctl.plan import render_plan

    result = apply_mod.apply(str(_inventory_root(ctx)), lock_timeout, _say)
    if result.plan.empty:
        click.echo(result.plan.summary())
        return
    click.echo(render_plan(result.plan, show_diff=False), nl=False)
    for message in result.messages:
        click.echo(message)
    p = result.plan
    click.echo(f"Apply complete: {p.count('create')} added, {p.count('update')} changed, {p.count('delete')} removed.")


@cli.command()
@click.pass_context
def serve(ctx: click.Context) -> None:
    """Run a real uWSGI Emperor and nginx for this inventory in the foreground (Ctrl-C stops both)."""
    from hostctl import pipeline, serve as serve_mod

    inv, owners = pipeline.load_checked(_inventory_root(ctx), host_checks=False)
    ctx.exit(serve_mod.run(inv, owners, _say))


def main(argv: list[str] | None = None) -> None:
    """Entry point: usage errors exit 1 (not click's 2), so 2 means only 'plan found changes'."""
    try:
        rv = cli.main(args=argv, prog_name="hostctl", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("Aborted!", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(rv if isinstance(rv, int) else 0)

