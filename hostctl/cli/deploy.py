"""The multi-host commands, `hostctl deploy` and `hostctl bootstrap`: click only.

Registered on the main group in ``main.py``; the work is in ``targets/deploy.py`` and
``targets/bootstrap.py``. ``deploy`` exits 0 when every host succeeded and 1 when any
failed or a customer was held back by its own broken file (each host's outcome is
printed either way).
"""

from __future__ import annotations

import click

from hostctl.inventory import loader as inventory
from hostctl.targets import bootstrap as bootstrap_mod, deploy as deploy_mod


@click.command()
@click.option("--host", "hosts", multiple=True, metavar="NAME", help="Deploy only to this host (repeatable; default: all).")
@click.option("--dry-run", is_flag=True, help="Show each host's plan (read over SSH) without changing anything.")
@click.option("--create-users", is_flag=True, help="Create customers' Unix users that do not exist on a host yet.")
@click.pass_context
def deploy(ctx: click.Context, hosts: tuple[str, ...], dry_run: bool, create_users: bool) -> None:
    """Deploy the inventory to its hosts over SSH, in parallel, sending only what changed."""
    report = deploy_mod.deploy(ctx.obj["inventory"], hosts, dry_run=dry_run, create_users=create_users)
    click.echo(deploy_mod.render_report(report), nl=False)
    if not report.ok or report.held:  # a customer held back by its broken file is reported like a failure
        ctx.exit(1)


@click.command()
@click.option("--host", "host", required=True, metavar="NAME", help="The host to prepare.")
@click.option("--files-only", is_flag=True,
              help="Only create the directories and write the system files: no apt-get, no systemctl.")
@click.option("--print", "show", is_flag=True, help="Print the script that would run there, and do nothing.")
@click.pass_context
def bootstrap(ctx: click.Context, host: str, files_only: bool, show: bool) -> None:
    """Prepare a new Debian/Ubuntu host: install nginx and uWSGI, the Emperor's unit, the nginx include, directories."""
    inv = inventory.load(ctx.obj["inventory"])
    if show:
        from hostctl.inventory import placement
        from hostctl.render import templates

        placement.select_hosts(inv, [host])
        boot = bootstrap_mod.build(inv, host, templates.environment(inv.root), packages=not files_only, services=not files_only)
        click.echo(boot.script, nl=False)
        return
    output = bootstrap_mod.run(inv, host, packages=not files_only, services=not files_only)
    for line in output.splitlines():
        if line.startswith("hostctl-bootstrap: "):
            click.echo(line.removeprefix("hostctl-bootstrap: "))
    click.echo(f"Host {host!r} is ready; deploy to it with `hostctl deploy --host {host}`.")
