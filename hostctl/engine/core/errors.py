"""The engine's error and the one table of exit statuses (hostctl's commands and the engine process use it).

The engine cannot use click; the control side turns an ``EngineError`` into its
own error with the same message.
"""

from __future__ import annotations

EXIT_OK = 0  # done (also: nothing to do)
EXIT_FAILED = 1  # an error, or customers held back (quarantined or rolled back), or a host failed
EXIT_CHANGES = 2  # `plan --exit-code`: there are changes
EXIT_LOCKED = 7  # another apply/deploy held the host's lock for too long; nothing was changed
EXIT_CHANGED = 8  # the host changed since its plan was made (another deploy?); nothing was changed


class EngineError(Exception):
    """A step could not be done; ``code`` is the exit status from the table above."""

    def __init__(self, message: str, code: int = EXIT_FAILED):
        super().__init__(message)
        self.message = message
        self.code = code
