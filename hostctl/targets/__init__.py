"""Targets: where a plan is carried out and how a host and its inventory are set up.

SSH, deploy to many hosts, bootstrap, init (``scaffold``), adding and removing customer files
(``customers``, checked against this host), an app's run/restart/release here or over SSH (``apps``).

May import: hostctl.errors, hostctl.inventory, hostctl.plan, hostctl.render, hostctl.engine,
hostctl.acme. Never status or cli.
"""
