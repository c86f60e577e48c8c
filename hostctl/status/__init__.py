"""Status and logs: observe what runs (locally or over SSH), decide each app's state, format it.

May import: hostctl.errors, hostctl.inventory, hostctl.plan, hostctl.render, hostctl.engine,
hostctl.acme, hostctl.targets. Never cli.
"""
