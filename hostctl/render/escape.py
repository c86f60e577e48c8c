"""Escaping for the two config languages hostctl writes, used as Jinja2 filters.

This is the second line of defence behind the checks in ``inventory/values.py``: even a
value that slipped past validation (or a custom template) cannot add a line or
directive, because these filters refuse it at render time.

uWSGI ini values go through three expansions (see uWSGI's ParsingOrder docs and
tests/test_escape.py): ``%x`` magic at parse time (``%%`` is a literal ``%``),
then ``$(ENV)`` and ``@(file)`` on the assembled tree, then ``%(option)``
placeholders, which rescan their own output. So ``%`` is doubled, ``$(`` and
``@(`` are written through the placeholders ``hc_dollar``/``hc_at`` that every
vassal defines, and ``%(`` cannot be represented at all and is refused.
"""

from __future__ import annotations

import re


class EscapeError(ValueError):
    """A value cannot be written safely."""


INI_PLACEHOLDERS = "set-placeholder = hc_dollar=$\nset-placeholder = hc_at=@"
_NGINX_TOKEN = re.compile(r"^[A-Za-z0-9._/+@*:\[\]~-]+$")
_INI_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # control characters but tab


def ini(value: object) -> str:
    """A uWSGI ini value that reads back as exactly ``value``."""
    text = str(value)
    if _INI_CONTROL.search(text):
        raise EscapeError(f"{text!r} contains a control character and cannot be written to a uWSGI ini")
    if "%(" in text:
        raise EscapeError(f"{text!r} contains '%(' and cannot be written to a uWSGI ini")
    if text != text.rstrip(" \t"):
        raise EscapeError(f"{text!r} ends in white space, which uWSGI strips")
    text = text.replace("%", "%%")
    return text.replace("$(", "%%(hc_dollar)(").replace("@(", "%%(hc_at)(")


def nginx(value: object) -> str:
    """An nginx token (a name, path or address) that cannot start a new directive or block."""
    text = str(value)
    if not _NGINX_TOKEN.fullmatch(text):  # not match: '$' accepts a trailing newline
        raise EscapeError(f"{text!r} cannot be written to nginx configuration unquoted")
    return text
