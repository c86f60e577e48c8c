"""Render: the inventory turned into file contents (vassals, nginx server blocks); pure.

Paths (layout), escaping, templates, TLS and cgroup decisions, who vassals run as (identity),
on-demand companions and the read-back of rendered files. Nothing here reads the live system.
May import: hostctl.errors, hostctl.inventory, hostctl.plan. Never engine or anything above.
"""
