"""One apply at a time: an exclusive flock on a file in ``state_dir``.

The kernel drops the lock when the holder dies (even by kill -9), so a crashed
apply never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
import time
from contextlib import contextmanager
from typing import Callable, Iterator

from hostctl.engine.core.errors import EXIT_LOCKED, EngineError


@contextmanager
def exclusive(path: str, timeout: float, on_wait: Callable[[str], None] = lambda _: None) -> Iterator[None]:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            if timeout <= 0:
                raise EngineError(f"another hostctl apply (pid {holder}) is running; try again when it has finished", EXIT_LOCKED) from None
            on_wait(f"waiting up to {timeout:g} s for another hostctl apply (pid {holder}) to finish...")
            deadline = time.monotonic() + timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise EngineError(f"another hostctl apply (pid {holder}) is still running after {timeout:g} s; nothing was written", EXIT_LOCKED) from None
                    time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)
