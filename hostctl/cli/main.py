"""The command line: a thin click layer over the pipeline and the effects.

Exit codes, decided once: 0 success (and, for ``plan --exit-code``, no
changes); 1 any error, including usage errors; 2 ``plan --exit-code`` found
changes (as terraform's -detailed-exitcode).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from hostctl import __version__
from hostctl.cli.lazy import LazyGroup
from hostctl.errors import HostctlError
from hostctl.render import tls
from hostctl.targets import customers, scaffold


def _inventory_root(ctx: click.Context) -> Path:
    return Path(ctx.obj["inventory"])


def _say(message: str) -> None:
    click.echo(message, err=True)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-i", "--inventory", envvar="HOSTCTL_INVENTORY", default="inventory", show_default=True,
              type=click.Path(file_okay=False), help="Inventory directory (or $HOSTCTL_INVENTORY).")
@click.version_option(__version__, prog_name="hostctl")
@click.pass_context
def cli(ctx: click.Context, inventory: str) -> None:
    """Render customers' uWSGI vassals and nginx server blocks from a YAML inventory and apply them."""
    ctx.ensure_object(dict)
    ctx.obj["inventory"] = inventory


def _set_inventory(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value is not None:
        ctx.obj["inventory"] = value


def _accept_inventory_after(command: click.Command) -> None:
    """`hostctl init --production -i DIR` as well as `hostctl -i DIR init --production`."""
    if any("-i" in p.opts for p in command.params):
        return
    command.params.append(click.Option(["-i", "--inventory"], default=None, expose_value=False, callback=_set_inventory,
                                       type=click.Path(file_okay=False), help="Inventory directory (also accepted before the command)."))
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            _accept_inventory_after(sub)


cli.on_add = _accept_inventory_after


@cli.command()
@click.option("--production", is_flag=True, help="Use system paths (/etc/hostctl, /run/hostctl, ...) and systemd's nginx.")
@click.option("--refresh", is_flag=True, help="Existing inventory: render system/ again from hostctl.yaml and show the diff.")
@click.pass_context
def init(ctx: click.Context, production: bool, refresh: bool) -> None:
    """Create a new inventory: hostctl.yaml, customers/, and system/ (systemd units, Emperor and nginx snippets)."""
    root = _inventory_root(ctx)
    if refresh:
        changed = scaffold.refresh(root)
        for path, diff in changed:
            click.echo(diff, nl=False)
        click.echo(f"{len(changed)} file(s) written in {root / scaffold.SYSTEM_DIR}; install them as the README's "
                   "'Running it in production' says, then `systemctl daemon-reload`" if changed
                   else f"{root / scaffold.SYSTEM_DIR} is up to date.")
    else:
        for path in scaffold.init(root, production):
            click.echo(f"created {path}")
        click.echo(f"Next: hostctl -i {root} add-customer NAME --domain DOMAIN --wsgi MODULE:CALLABLE")
    note = scaffold.stable_path_note() if production or refresh else None
    if note:
        _say(note)


@cli.command("add-customer")
@click.argument("name")
@click.option("--domain", "domains", multiple=True, required=True, help="A domain the app serves (repeatable).")
@click.option("--wsgi", required=True, help="'package.module:callable', or a .py file ('app.py' or 'app.py:callable').")
@click.option("--app", "app_name", default="web", show_default=True, help="The app's name.")
@click.option("--chdir", help="Directory the app runs in (must exist).")
@click.option("--virtualenv", help="The app's virtualenv (made with the Python uWSGI embeds).")
@click.option("--processes", type=int, help="Worker processes.")
@click.option("--threads", type=int, help="Threads per worker process.")
@click.option("--static", "static", multiple=True, metavar="PREFIX=DIR", help="nginx serves DIR at URL PREFIX (repeatable).")
@click.option("--memory", help="Memory limit for the customer, e.g. 256M.")
@click.option("--cpu", type=float, help="CPU limit for the customer, in cores (e.g. 0.5).")
@click.option("--pids", type=int, help="Limit on the customer's processes and threads.")
@click.option("--env", "env", multiple=True, metavar="K=V", help="An environment variable (repeatable).")
@click.pass_context
def add_customer(ctx: click.Context, name: str, domains: tuple[str, ...], wsgi: str, static: tuple[str, ...],
                 env: tuple[str, ...], **options: object) -> None:
    """Add customer NAME with one app (writes customers/NAME.yaml)."""
    path = customers.add(_inventory_root(ctx), name, list(domains), wsgi, static=_pairs(static, "--static"),
                         env=_pairs(env, "--env"), **options)
    click.echo(f"created {path}; run `hostctl plan` to see what apply would do")


def _pairs(items: tuple[str, ...], option: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"{item!r} is not {'KEY=VALUE' if option == '--env' else 'PREFIX=DIR'}", param_hint=f"'{option}'")
        out[key] = value
    return out


@cli.command("remove-customer")
@click.argument("name")
@click.option("--purge", is_flag=True, help="Also remove its Unix user, logs and socket directories at the next apply.")
@click.pass_context
def remove_customer(ctx: click.Context, name: str, purge: bool) -> None:
    """Remove customer NAME's file; the next apply stops its apps and kills every process it left."""
    root = _inventory_root(ctx)
    user, host = customers.purge_target(root, name) if purge else (None, None)
    path = customers.remove(root, name)
    if purge:
        customers.request_purge(root, name, user, host)
        command = f"`hostctl deploy` to host {host!r}" if host else "`hostctl apply`"
        click.echo(f"removed {path}; the next {command} stops its apps, kills its processes and removes "
                   f"its Unix user {user}, its log and socket directories")
        return
    click.echo(f"removed {path}; run `hostctl apply` to stop its apps")


@cli.command()
@click.pass_context
def validate(ctx: click.Context) -> None:
    """Check the inventory, its templates and the apps' virtualenvs; exit 1 on any problem.

    A multi-host inventory is checked without touching a server (for CI or a pre-commit hook).
    """
    from hostctl.engine import pipeline
    from hostctl.inventory import placement

    settings = placement.peek_settings(str(_inventory_root(ctx)))
    if settings is not None and settings.hosts:
        from hostctl.engine import hostchecks

        checked = hostchecks.check_hosts(_inventory_root(ctx))
        inv = checked.inventory
        per_host = "; ".join(f"{h}: {checked.customers[h]} customers, {checked.files[h]} files" for h in sorted(checked.files))
        click.echo(f"OK: {len(inv.customers)} customers, {len(inv.apps())} apps on {len(checked.files)} hosts ({per_host}).")
        _say("note: checked without SSH; what lives on the servers (virtualenvs, chdirs, wsgi files, Unix users, "
             "certificates, nginx's other servers) was not read")
        return
    prepared = pipeline.prepare(_inventory_root(ctx))
    held = prepared.inventory.held
    if held:
        from hostctl.errors import InventoryError

        raise InventoryError([p for problems in held.values() for p in problems])
    apps = len(prepared.inventory.apps())
    click.echo(f"OK: {len(prepared.inventory.customers)} customers, {apps} apps, {len(prepared.desired)} files rendered.")


@cli.command()
@click.option("--exit-code", is_flag=True, help="Exit 2 when there are changes, 0 when there are none (1 on an error "
              "or a customer held back by its broken file).")
@click.option("--no-diff", is_flag=True, help="List the files only.")
@click.option("--host", "host", metavar="NAME", help="Multi-host: the plan of this host, read from the server over SSH.")
@click.option("--offline", is_flag=True, help="With --host: plan against the state recorded at the last deploy "
              "from this machine; no SSH.")
@click.pass_context
def plan(ctx: click.Context, exit_code: bool, no_diff: bool, host: str | None, offline: bool) -> None:
    """Show what apply would change: files added, changed (as diffs, secrets hidden) and removed."""
    from hostctl.engine import isolation, pipeline
    from hostctl.plan.diff import render_plan

    if offline and host is None:
        raise HostctlError("--offline needs --host NAME (a multi-host inventory's host)")
    if host is not None:
        from hostctl.targets import deploy

        if offline:
            done = deploy.plan_offline(str(_inventory_root(ctx)), host)
            click.echo(f"Offline: {done.basis}.")
            outcome, held = done.outcome, done.held
        else:
            outcome, held = deploy.plan_host(str(_inventory_root(ctx)), host)
        for customer in outcome.runtime:
            click.echo(f"~ runtime {customer}: directories or cgroup limits change (no vassal is reloaded)")
        for p in outcome.plans:
            click.echo(render_plan(p, show_diff=False), nl=False)
        for line in outcome.tls:
            click.echo(line)
        for customer, target in sorted(outcome.held.items()):
            click.echo(f"move: {customer!r} now lives on {target!r}; a deploy removes it here only once {target!r} serves it")
        _refuse_held(held, "deploy keeps their files on their host as they are")
        if exit_code and outcome.changed:
            ctx.exit(2)
        return

    prepared = pipeline.prepare(_inventory_root(ctx), missing_users_ok=True)
    limits = prepared.isolation
    _notes(prepared.owners, limits)
    if limits is not None:
        click.echo(isolation.render(limits), nl=False)
    if prepared.plan.empty and not prepared.plan.conflicts and limits is not None and not limits.empty:
        click.echo(isolation.summary(limits, done=False))  # not "No changes": the cgroups or users change
    else:
        click.echo(render_plan(prepared.plan, show_diff=not no_diff), nl=False)
    for line in tls.plan_lines(prepared.inventory, prepared.ready_certs):
        click.echo(line)
    from hostctl.engine.history import quarantined

    held = prepared.inventory.held
    for name, why in sorted(quarantined(prepared.inventory.settings).items()):
        if name not in held:
            click.echo(f"quarantined by the last apply (its last-known-good files stay live): {name}: {why}")
    if prepared.plan.conflicts:
        raise HostctlError("files hostctl did not create are in the way (marked '!'); apply would refuse")
    _refuse_held(held, "apply keeps their live files as they are")
    if exit_code and not (prepared.plan.empty and (limits is None or limits.empty)):
        ctx.exit(2)


def _refuse_held(held, kept: str) -> None:
    """Exit 1 naming each customer held back by its own inventory file (README: exit status 1, as apply and
    deploy exit then; not 2, so a script that applies on 2 does not go on without anyone seeing the broken file)."""
    if held:
        from hostctl.plan.quarantine import held_back

        lines = [f"{len(held)} customer(s) held back by their own inventory file; {kept}:"]
        raise HostctlError("\n".join(lines + [f"  {r}" for r in sorted(held_back(held))]))


@cli.command()
@click.option("--lock-timeout", type=float, default=60.0, show_default=True,
              help="Seconds to wait for another apply to finish (0: fail at once).")
@click.option("--create-users", is_flag=True, help="As root: create missing customer users (useradd --system, no login shell).")
@click.pass_context
def apply(ctx: click.Context, lock_timeout: float, create_users: bool) -> None:
    """Write the changed vassals and server blocks atomically; reload nginx only if a server block changed."""
    from hostctl.engine import apply as apply_mod, isolation

    result = apply_mod.apply(str(_inventory_root(ctx)), lock_timeout, _say, create_users=create_users)
    if result.isolation is not None:
        _notes(result.owners, result.isolation)
        click.echo(isolation.render(result.isolation), nl=False)
    _report_apply(result, "Apply")


def _report_apply(result, what: str) -> None:
    """The summary of an apply or rollback; exit 1 naming every quarantined customer."""
    from hostctl.plan.diff import render_plan
    from hostctl.plan.quarantine import report

    limits = getattr(result, "isolation", None)
    if result.plan.empty:
        if result.rejections:
            click.echo("Nothing was applied.")
        elif limits is not None and not limits.empty:
            from hostctl.engine import isolation

            click.echo(isolation.summary(limits, done=True))
        else:
            click.echo(result.plan.summary())
        for message in result.messages:
            click.echo(message)
    else:
        click.echo(render_plan(result.plan, show_diff=False), nl=False)
        for message in result.messages:
            click.echo(message)
        p = result.plan
        click.echo(f"{what} complete: {p.count('create')} added, {p.count('update')} changed, {p.count('delete')} removed.")
    if result.rejections:
        raise HostctlError(report(result.rejections))


@cli.command()
@click.argument("customer", required=False)
@click.option("--list", "list_", is_flag=True, help="List the kept generations instead.")
@click.option("--lock-timeout", type=float, default=60.0, show_default=True,
              help="Seconds to wait for another apply to finish (0: fail at once).")
@click.option("--host", "host", metavar="NAME", help="Multi-host: roll back on this server (over SSH).")
@click.pass_context
def rollback(ctx: click.Context, customer: str | None, list_: bool, lock_timeout: float, host: str | None) -> None:
    """Put the previously applied generation back live (only CUSTOMER's files, if given)."""
    from hostctl.engine import history, rollback as rollback_mod
    from hostctl.inventory import loader as inventory

    if host is not None and not list_:
        from hostctl.targets import deploy

        done = deploy.rollback_host(str(_inventory_root(ctx)), host, customer, lock_timeout)
        _report_apply(done, f"Rollback on host {host!r} to generation {done.target}")
        click.echo("The inventory was not changed; the next deploy re-applies it.")
        return

    if list_:
        from hostctl.render import layout
        from hostctl.engine import state

        inv = inventory.load_settings(_inventory_root(ctx))  # works while a customer file is broken
        gens = [history.load(inv.settings, number) for number in history.numbers(inv.settings)]
        live = {p: e.sha256 for p, e in state.read_manifest(layout.manifest(inv.settings)).files.items()}
        for line in history.listing(gens, live, first_kept=bool(gens) and gens[0].number == 1):
            click.echo(line)
        return
    result, target, where = rollback_mod.rollback(_inventory_root(ctx), customer, lock_timeout, _say)
    _report_apply(result, f"Rollback to generation {target.number}")
    click.echo(f"The inventory was not changed; the next apply re-applies it. Generation {target.number}'s "
               f"inventory files are kept under 'inventory' in {where}.")


@cli.command()
@click.pass_context
def serve(ctx: click.Context) -> None:
    """Run a real uWSGI Emperor and nginx for this inventory in the foreground (Ctrl-C stops both)."""
    from hostctl.engine import pipeline
    from hostctl.cli import serve as serve_mod

    inv, owners = pipeline.load_checked(_inventory_root(ctx), host_checks=False)
    ctx.exit(serve_mod.run(inv, owners, _say))


@cli.command()
@click.argument("customers", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (keys in the README) instead of a table.")
@click.option("--watch", is_flag=True, help="Refresh in place until q is pressed (m/c/n change the sort).")
@click.option("--sort", type=click.Choice(["name", "memory", "cpu"]), default="name", show_default=True,
              help="Order of the rows; memory and cpu put the heaviest first.")
@click.option("--interval", type=click.FloatRange(min=0.1), default=2.0, show_default=True,
              help="Seconds between --watch refreshes.")
@click.option("--cpu-interval", type=click.FloatRange(min=0.0), default=0.5, show_default=True,
              help="Seconds over which CPU% is measured (0: no CPU%).")
@click.option("--host", "hosts", multiple=True, metavar="NAME",
              help="Multi-host: read this host over SSH (repeatable; default: all hosts).")
@click.pass_context
def status(ctx: click.Context, customers: tuple[str, ...], as_json: bool, watch: bool, sort: str,
           interval: float, cpu_interval: float, hosts: tuple[str, ...]) -> None:
    """Show every app's state, load and memory; exit 1 if any app is down, crash-looping or unknown."""
    from hostctl.inventory import loader as inventory_mod
    from hostctl.engine import state
    from hostctl.status import rows as status_mod, formatting as status_format, snapshot as status_snapshot

    inv = inventory_mod.load(_inventory_root(ctx), partial=True)  # a broken customer file holds back only that customer
    apps = status_mod.select_apps(inv, customers, state.held_apps(inv))
    held = [c for c in sorted(inv.held) if not customers or c in customers]  # multi-host: looked for on every host
    if watch:
        from hostctl.status import watch as status_watch

        if as_json or not sys.stdout.isatty():
            raise click.UsageError("--watch needs a terminal (and no --json)")
        last: list[status_snapshot.Snapshot] = []

        def refresh() -> tuple[list[status_mod.Row], list[str]]:
            last[:] = [status_snapshot.take(inv, apps, list(hosts), cpu_interval, last[-1] if last else None, held)]
            return last[0].rows, last[0].unread

        status_watch.run(refresh, sort, interval)
        return
    snap = status_snapshot.take(inv, apps, list(hosts), cpu_interval, held=held)
    rows = status_mod.sort_rows(snap.rows, sort)
    healthy = status_mod.healthy(rows)
    if as_json:
        click.echo(status_format.to_json(rows, snap.emperor_error, snap.notes, healthy), nl=False)
    else:
        click.echo(status_format.table(rows, snap.unread), nl=False)
    if not healthy:
        ctx.exit(1)


@cli.command("rotate-logs")
@click.pass_context
def rotate_logs(ctx: click.Context) -> None:
    """Rotate nginx's per-app logs past logs.max_size with logrotate, keeping logs.keep (for a timer or cron)."""
    import os

    from hostctl.inventory import loader as inventory
    from hostctl.engine import logrotate
    from hostctl.render import templates

    inv = inventory.load_settings(_inventory_root(ctx))  # works while a customer file is broken
    refused = logrotate.run(inv.settings, templates.environment(inv.root), serve=False, as_root=os.geteuid() == 0)
    for message in refused:
        _say(message)
    if refused:
        ctx.exit(1)


@cli.command()
@click.argument("customer")
@click.option("--app", help="Only this app (default: all of the customer's apps).")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines as they are written (Ctrl-C stops).")
@click.option("-n", "--lines", type=click.IntRange(min=0), default=10, show_default=True, help="How many of the last lines to show.")
@click.option("--nginx", is_flag=True, help="nginx's access and error logs instead of uWSGI's.")
@click.pass_context
def logs(ctx: click.Context, customer: str, app: str | None, follow: bool, lines: int, nginx: bool) -> None:
    """Show CUSTOMER's uWSGI log (or nginx's logs), like tail [-f]."""
    from hostctl.inventory import loader as inventory_mod
    from hostctl.status import logs as logs_mod

    terminal = sys.stdout.isatty()  # a customer's escape sequences never reach it raw

    def emit(text: str) -> None:
        click.echo(logs_mod.for_terminal(text) if terminal else text, nl=False)
        sys.stdout.flush()

    inv = inventory_mod.load(_inventory_root(ctx), partial=True)  # a broken customer file does not hide logs
    if inv.settings.hosts:  # multi-host: the logs live on the customer's server
        from hostctl.status import logs_remote

        ctx.exit(1 if logs_remote.run(inv, customer, app, nginx, lines, follow, emit, _say) else 0)
    from hostctl.engine import state

    files = logs_mod.log_files(inv, customer, app, nginx, state.held_apps(inv))
    followers, missing = logs_mod.show(files, lines, emit)
    for note in missing:
        _say(note)
    if not follow:
        for follower in followers:
            follower.close()
        if len(missing) == len(files):
            ctx.exit(1)
        return
    logs_mod.follow(files, followers, emit)


@cli.command()
@click.option("--apply", "apply_now", is_flag=True,
              help="First create the customers' cgroups and write their limits from the inventory (what apply does).")
@click.option("--host", "host", metavar="NAME", help="Multi-host: the cgroups on this server, read there over SSH.")
@click.pass_context
def limits(ctx: click.Context, apply_now: bool, host: str | None) -> None:
    """Show each customer's cgroup: memory use against its limit, OOM kills, pids and CPU quota."""
    from hostctl.engine import isolation
    from hostctl.render.cgroups import usage_table

    if host is not None:
        from hostctl.inventory import loader as inventory_mod
        from hostctl.status import remote

        if apply_now:
            raise HostctlError("--apply with --host: `hostctl deploy --host NAME` writes a server's cgroups and limits")
        inv = inventory_mod.load(_inventory_root(ctx), partial=True)  # a broken customer file holds back only that customer
        hierarchy, rows = remote.limits(inv, host)
        click.echo(f"host {host!r}: {hierarchy.describe()}")
        if hierarchy.version is not None:
            click.echo(usage_table(rows), nl=False)
        return
    from hostctl.inventory import placement

    settings = placement.peek_settings(str(_inventory_root(ctx)))
    if settings is not None and settings.hosts:  # its customers' cgroups are on the servers, not here
        raise HostctlError(f"this inventory places customers on hosts; `hostctl limits --host NAME` reads a server's "
                           f"cgroups (hosts: {', '.join(sorted(settings.hosts))})")

    if apply_now:
        from hostctl.engine import apply as apply_mod

        plan, messages = apply_mod.apply_limits(_inventory_root(ctx))
        click.echo(isolation.render(plan), nl=False)
        for message in messages:
            click.echo(message)
    hierarchy, rows = isolation.usage(_inventory_root(ctx))
    click.echo(hierarchy.describe())
    if hierarchy.version is not None:
        click.echo(usage_table(rows), nl=False)


@cli.command()
@click.option("--state-dir", type=click.Path(file_okay=False), metavar="DIR",
              help="The state directory to restore from (default: the inventory's state_dir). No inventory is read with it.")
@click.pass_context
def restore(ctx: click.Context, state_dir: str | None) -> None:
    """After a reboot: recreate the customers' runtime directories, cgroups and limits from the last apply's record.

    Run by the hostctl-restore unit before nginx and the Emperor. A customer whose record is
    damaged is reported and skipped (exit 1); the others are restored. A customer whose server
    blocks fail nginx -t on their own has them set aside (state_dir/held), so nginx starts for the others.
    """
    from hostctl.engine.core import runtime

    if state_dir is None:
        from hostctl.inventory import loader as inventory

        state_dir = inventory.load_settings(_inventory_root(ctx)).settings.state_dir
    done = runtime.restore(state_dir)
    for message in done.messages:
        click.echo(message)
    for customer, why in sorted(done.failed.items()):
        _say(f"{customer}: FAILED: {why}")
    click.echo(f"{len(done.customers)} customer(s) restored, {len(done.failed)} failed.")
    if not done.ok:
        ctx.exit(1)


def _notes(owners, limits) -> None:
    """Who the vassals run as and which limits are not enforced, on stderr (they are not changes)."""
    if owners is not None and not owners.identity.per_customer:
        _say(f"note: {owners.describe()}")
    for note in (limits.notes if limits is not None else ()):
        _say(f"note: {note}")


# Imported when used (lazy.py): paramiko/fabric and cryptography cost every other command time.
cli.add_lazy("deploy", "hostctl.cli.deploy:deploy")  # multi-host commands
cli.add_lazy("bootstrap", "hostctl.cli.deploy:bootstrap")
cli.add_lazy("certs", "hostctl.cli.certs:certs_group")  # TLS certificates
cli.add_lazy("restart", "hostctl.cli.apps:restart")  # an app's life: restart, one-off commands, releases
cli.add_lazy("run", "hostctl.cli.apps:run")
cli.add_lazy("release", "hostctl.cli.apps:release")


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

