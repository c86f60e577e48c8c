"""The manifest: which live files hostctl wrote (the engine's, ``hostctl/engine/core/manifest.py``)."""

from hostctl.engine.core.manifest import VERSION, Entry, Manifest, sha256  # noqa: F401
