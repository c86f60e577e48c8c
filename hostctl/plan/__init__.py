"""Plan: the value types passed between rendering and the engine, and the diff between them.

Rendered files, live files, the manifest, a ``Plan`` of changes (``make_plan``) and the pure
quarantine bisection. No I/O.
May import: hostctl.errors, hostctl.inventory. Never render, engine or anything above.
"""
