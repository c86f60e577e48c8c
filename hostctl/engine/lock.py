"""One apply at a time: the engine's lock (``hostctl/engine/core/lock.py``), its errors as ``HostctlError``."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

from hostctl.engine.core import lock as engine_lock
from hostctl.errors import from_engine


@contextmanager
def exclusive(path: str, timeout: float, on_wait: Callable[[str], None] = lambda _: None) -> Iterator[None]:
    with from_engine(), engine_lock.exclusive(path, timeout, on_wait):
        yield
