"""Engine: the steps that read and change one server (lock, users, cgroups, vet, write, reload, probe, roll back).

Also the local front half of validate/plan/apply (``pipeline``: load, check, render, read, compare).
May import: hostctl.errors, hostctl.inventory, hostctl.plan, hostctl.render.
Never acme, targets, status or cli.
"""
