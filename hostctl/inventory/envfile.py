"""A customer's secrets file (``env_file:``): env values that need not be committed to the inventory.

The file holds ``KEY=VALUE`` lines (``#`` comments and blank lines are skipped;
the value is everything after the first ``=``, taken literally: no quotes, no
expansion). Its values are merged into the ``env`` of every app of the customer
(an app's own ``env`` wins) and go through the same checks and the same ini
escaping as inline ``env`` values.

Only a file that nobody but its owner can read counts: a regular file (not a
symlink, not a FIFO: opened with ``O_NOFOLLOW|O_NONBLOCK``), owned by root (by
the invoking user when hostctl is not root), no group or other permission bits,
at most ``MAX_BYTES``. Anything else is refused with a clear error, so a secret
never sits in a file others could read or swap. Error messages never quote a
value.

``parse`` is pure; ``read`` opens the file.
"""

from __future__ import annotations

import os
import stat

from hostctl.inventory import values

MAX_BYTES = 64 << 10


class EnvFileError(ValueError):
    pass


def parse(text: str) -> dict[str, str]:
    """``KEY=VALUE`` lines -> dict; raise ``EnvFileError`` naming the line (never the value)."""
    out: dict[str, str] = {}
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if "=" not in raw:
            raise EnvFileError(f"line {number}: not KEY=VALUE")
        key, value = raw.split("=", 1)
        key = key.strip()
        try:
            values.env_key(key)
        except ValueError as exc:
            raise EnvFileError(f"line {number}: {exc}") from None
        try:
            values.env_value(value)
        except ValueError as exc:
            reason = str(exc).replace(repr(value), "the value")
            raise EnvFileError(f"line {number} ({key}): {reason}") from None
        if key in out:
            raise EnvFileError(f"line {number}: {key} is set twice")
        out[key] = value
    return out


def read(path: str, euid: int | None = None) -> dict[str, str]:
    """Open, check and parse ``path``; raise ``EnvFileError`` saying why it is refused."""
    euid = os.geteuid() if euid is None else euid
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == 40:  # ELOOP: the last component is a symlink
            raise EnvFileError("is a symlink; name the file itself (a link could be re-pointed)") from None
        raise EnvFileError(f"cannot be opened: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise EnvFileError("is not a regular file")
        owner = "root" if euid == 0 else f"uid {euid} (the user running hostctl)"
        if st.st_uid != euid:
            raise EnvFileError(f"is owned by uid {st.st_uid}, not by {owner}; chown it")
        if st.st_mode & 0o077:
            raise EnvFileError(f"has mode {stat.S_IMODE(st.st_mode):04o}: group or others may access it; chmod 600 it")
        if st.st_size > MAX_BYTES:
            raise EnvFileError(f"is {st.st_size} bytes; at most {MAX_BYTES} are read")
        data = os.read(fd, MAX_BYTES + 1)
    finally:
        os.close(fd)
    if len(data) > MAX_BYTES:
        raise EnvFileError(f"is over {MAX_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise EnvFileError("is not UTF-8 text") from None
    return parse(text)
