"""ACME: certificate issuance and renewal (client, schedule, history, the issuing run).

May import: hostctl.errors, hostctl.inventory, hostctl.plan, hostctl.render, hostctl.engine.
Never targets, status or cli.
"""
