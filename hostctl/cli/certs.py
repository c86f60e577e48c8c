"""`hostctl certs`: list certificates, and issue or renew ACME ones (a thin click layer)."""

from __future__ import annotations

import click

from hostctl.acme import history as acme_history, schedule as acme_schedule
from hostctl.engine import certs
from hostctl.errors import HostctlError
from hostctl.render import tls


def rows(inv, now, specs=None, load=certs.read_local) -> list[dict[str, str]]:  # type: ignore[no-untyped-def]
    """One row per certificate the inventory wants (or ``specs``: one host's), for the listing; ``load`` reads a file."""
    history = acme_history.load(inv.settings)
    out = []
    for spec in tls.wanted(inv) if specs is None else specs:
        facts = certs.read(spec.certificate, spec.key, load)
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


def _loader(found: dict, host: str):  # type: ignore[no-untyped-def]
    """Read a file from what the probe read on ``host`` (``status.remote.files``)."""
    import errno

    def load(path: str) -> bytes:
        got = found.get(path) or {"missing": True}
        if got.get("missing"):
            raise FileNotFoundError(errno.ENOENT, "no such file", path)
        if "data" not in got:
            raise OSError(errno.EIO, f"{got.get('error')} on host {host!r}", path)
        return str(got["data"]).encode("latin-1")

    return load


def host_specs(inv, host: str) -> list:  # type: ignore[no-untyped-def]
    """The certificates of the apps on ``host``, at the paths deploy ships them to there."""
    from hostctl.inventory import placement

    placement.select_hosts(inv, [host])
    view = placement.host_inventory(inv, host)
    return [s for s in (tls.cert_spec(app, view.settings, on_host=True) for app in view.apps()) if s is not None]


def _host_rows(inv, host: str) -> list[dict[str, str]]:  # type: ignore[no-untyped-def]
    """`certs --host`: the certificates of the apps placed on ``host``, read on that server over SSH (the copies
    deploy shipped into its ``tls.cert_dir``)."""
    from hostctl.status import remote

    specs = host_specs(inv, host)
    paths = [p for spec in specs for p in (spec.certificate, spec.key)]  # where deploy ships them on that host
    found = remote.files(inv, host, paths) if paths else {}
    return rows(inv, certs.now_utc(), specs, _loader(found, host))


@click.group(invoke_without_command=True)
@click.option("--host", "host", metavar="NAME", help="Multi-host: the certificates on this server, read there over SSH.")
@click.pass_context
def certs_group(ctx: click.Context, host: str | None) -> None:
    """List every certificate: domains, issuer, days to expiry, state. Subcommands issue and renew ACME ones."""
    if ctx.invoked_subcommand is not None:
        if host is not None:
            raise HostctlError(f"--host lists one server's certificates; `certs {ctx.invoked_subcommand}` runs on this machine")
        return
    from hostctl.inventory import loader as inventory

    inv = inventory.load(ctx.obj["inventory"])
    table = _host_rows(inv, host) if host is not None else rows(inv, certs.now_utc())
    if not table:
        click.echo(f"No app on host {host!r} has tls: in the inventory." if host else "No app has tls: in the inventory.")
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
