"""Crash-safe file operations: the engine's (``hostctl/engine/core/fsops.py``), for the control side's own files too."""

from hostctl.engine.core.fsops import TMP_MARK, clean_temp_files, ensure_dir, fsync_dir, remove, temp_name, write_atomic  # noqa: F401
