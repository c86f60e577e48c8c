"""`hostctl certs`: list certificates, and issue or renew ACME ones (a thin click layer)."""

from __future__ import annotations

import click

from hostctl.acme import history as acme_history, schedule as acme_schedule
from hostctl.engine import certs
from hostctl.errors import HostctlError
from hostctl.render import tls


def rows(inv, now) -> list[dict[str, str]]:  # type: ignore[no-untyped-def]
    """One row per certificate the inventory wants, for the listing."""
    history = acme_history.load(inv.settings)
    out = []
    for spec in tls.wanted(inv):
        facts = certs.read(spec.certificate, spec.key)
        due = acme_schedule.need(spec, facts, now, inv.settings.tls.renew_days)
        if facts is None:
            state = "missing"
        elif facts.unusable(now):
            state = f"unusable: {facts.unusable(now)}"
        elif due is not None:
            state = "renew due" if due.kind == "renew" else due.reason
        else:
            state = "ok"
        failure = history.failures.get(spec.name)
        if failure and spec.source == "acme":
            state += f" (last order failed {failure.last:%Y-%m-%d %H:%M} UTC, {failure.count}x: {failure.error})"
        days = facts.days_left(now) if facts is not None else None
        out.append({
            "name": spec.name, "customer": spec.customer, "source": spec.source,
            "domains": ", ".join(sorted(facts.names)) if facts is not None and facts.names else ", ".join(spec.domains),
            "issuer": facts.issuer if facts is not None and facts.issuer else "-",
            "days": "-" if days is None else str(days), "state": state,
        })
    return out


@click.group(invoke_without_command=True)
@click.pass_context
def certs_group(ctx: click.Context) -> None:
    """List every certificate: domains, issuer, days to expiry, state. Subcommands issue and renew ACME ones."""
    if ctx.invoked_subcommand is not None:
        return
    from hostctl.inventory import loader as inventory

    inv = inventory.load(ctx.obj["inventory"])
    table = rows(inv, certs.now_utc())
    if not table:
        click.echo("No app has tls: in the inventory.")
        return
    headers = {"name": "CERTIFICATE", "customer": "CUSTOMER", "source": "SOURCE", "days": "DAYS", "issuer": "ISSUER",
               "domains": "DOMAINS", "state": "STATE"}
    widths = {k: max(len(headers[k]), *(len(r[k]) for r in table)) for k in headers if k != "state"}
    click.echo("  ".join(headers[k].ljust(widths[k]) for k in widths) + "  " + headers["state"])
    for row in table:
        click.echo("  ".join(row[k].ljust(widths[k]) for k in widths) + "  " + row["state"])


def _run(ctx: click.Context, kinds: frozenset, names: tuple[str, ...], force: bool) -> None:
    from hostctl.inventory import loader as inventory
    from hostctl.acme import issuance

    inv = inventory.load(ctx.obj["inventory"])
    if inv.settings.hosts:
        raise HostctlError("this inventory has hosts: `hostctl deploy` orders and renews their ACME certificates "
                           "(each challenge is answered by the nginx of the host that serves the domain)")
    result = issuance.run(inv, kinds, click.echo, frozenset(names), force)  # one line per certificate, as it goes
    if result.reloaded:
        click.echo(result.reloaded)
    new = [o for o in result.outcomes if o.ok and o.kind == "issue"]
    if new:
        click.echo(f"{len(new)} new certificate{'s' if len(new) != 1 else ''}: run `hostctl apply` to serve them over HTTPS.")
    if not result.outcomes and not result.schedule.held:
        click.echo("Nothing to renew: no ACME certificate expires within tls.renew_days." if "renew" in kinds
                   else "Nothing to issue: every ACME certificate exists and covers its app's domains.")
    if result.failed:
        raise HostctlError(f"{len(result.failed)} of {len(result.outcomes)} orders failed (see above); "
                           "the others went through, and the failed ones back off before the next try")


@certs_group.command("issue")
@click.argument("names", nargs=-1)
@click.pass_context
def issue(ctx: click.Context, names: tuple[str, ...]) -> None:
    """Obtain missing ACME certificates (new apps, added domains, unusable files), paced; NAMES limits it (CUSTOMER_APP)."""
    _run(ctx, frozenset({"issue"}), names, False)


@certs_group.command("renew")
@click.argument("names", nargs=-1)
@click.option("--force", is_flag=True, help="Renew now, whatever the expiry (and past any backoff).")
@click.pass_context
def renew(ctx: click.Context, names: tuple[str, ...], force: bool) -> None:
    """Renew ACME certificates that expire within tls.renew_days (30); reload nginx when one it serves was replaced."""
    _run(ctx, frozenset({"renew"}), names, force)


certs_group.name = "certs"
