"""Engine: the steps that read and change one server (lock, users, cgroups, vet, write, reload, probe, roll back).

The steps themselves are written once in ``engine/core`` (standard library only, imported by
anyone; ``deploy`` ships it to servers as a zip); the modules here are the control side of a
local apply: the front half of validate/plan/apply (``pipeline``: load, check, render, read,
compare), the job ``apply`` and ``rollback`` hand the core, cgroup facts, logs, the app agent.
May import: hostctl.errors, hostctl.inventory, hostctl.plan, hostctl.render.
Never acme, targets, status or cli.
"""
