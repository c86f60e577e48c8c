"""Talk to a running uWSGI Emperor through its stats socket (the engine's reader, ``hostctl/engine/core/emperor.py``)."""

from hostctl.engine.core.emperor import poke, read_stats  # noqa: F401
