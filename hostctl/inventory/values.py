"""Checks for every value that can reach a rendered file.

Each check either returns the normalised value or raises ``ValueError`` with a
sentence that quotes the bad value. They are the injection boundary: a value
that passes cannot add a line to a uWSGI ini or a directive to nginx (the
renderer's escaping in ``render/escape.py`` is the second, independent line).
"""

from __future__ import annotations

import re

from hostctl.inventory import domains

# Every pattern is applied with fullmatch: with match, '$' also accepts a trailing newline.
NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
_LABEL = r"(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)"
DOMAIN_RE = re.compile(rf"^(?:\*\.)?{_LABEL}(?:\.{_LABEL})*$")
ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
# Paths land in nginx (alias, logs) and uWSGI (chdir, socket, ...): no spaces,
# quotes, ';', '{', '}', '$', '%', '#', '(' or control characters.
PATH_RE = re.compile(r"^[A-Za-z0-9._/+@-]+$")
URL_PREFIX_RE = re.compile(r"^/(?:[A-Za-z0-9._~-]+/)*$")
IDENTIFIER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MODULE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*(?::[A-Za-z_][A-Za-z0-9_]*)?$")
SIZE_RE = re.compile(r"^([0-9]+)([KMGT]?)$")
SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
ENV_VALUE_MAX = 4096


def name(value: str, what: str = "name") -> str:
    if not NAME_RE.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a valid {what} (lowercase letters, digits and '-', starting with a letter, at most 31 characters)"
        )
    return value


def domain(value: str) -> str:
    """A customer's domain: a DNS name or ``*.`` + one, never an IP literal or a loopback name."""
    if ":" in value and re.fullmatch(r"\[?[0-9A-Fa-f:.]+\]?", value):
        raise ValueError(f"{value!r} is an IP address; customers get domain names only")
    if len(value) > 253 or not DOMAIN_RE.fullmatch(value):
        hint = " (use lowercase)" if value.lower() != value and DOMAIN_RE.fullmatch(value.lower()) else ""
        raise ValueError(f"{value!r} is not a valid domain name{hint}")
    why = domains.refusal(value)
    if why:
        raise ValueError(why)
    return value


def host_name(value: str) -> str:
    """A name the host answers to itself (``isolation.reserved_domains``): a plain DNS name."""
    if len(value) > 253 or not DOMAIN_RE.fullmatch(value) or value.startswith("*."):
        raise ValueError(f"{value!r} is not a host name (lowercase DNS labels separated by dots)")
    return value


def env_key(value: str) -> str:
    if not ENV_KEY_RE.fullmatch(value):
        raise ValueError(f"{value!r} is not a valid environment variable name (letters, digits and '_', not starting with a digit)")
    return value


def env_value(value: str) -> str:
    if any(ord(c) < 0x20 and c != "\t" or ord(c) == 0x7F for c in value):
        raise ValueError(f"{value!r} contains a control character (newline, carriage return, ...), which cannot be written to a uWSGI ini")
    if "%(" in value:
        raise ValueError(f"{value!r} contains '%(', which uWSGI always expands as a placeholder")
    if value != value.rstrip():
        raise ValueError(f"{value!r} ends in white space, which uWSGI strips")
    if len(value) > ENV_VALUE_MAX:
        raise ValueError(f"is {len(value)} characters long; at most {ENV_VALUE_MAX} are allowed")
    return value


def settings_path(value: str) -> str:
    """A path in hostctl.yaml: the operator's own; '..' is fine, it is resolved before use."""
    if not PATH_RE.fullmatch(value):
        raise ValueError(
            f"{value!r} is not an allowed path (letters, digits and . _ / + @ - only; no spaces, quotes or shell/nginx syntax)"
        )
    return value


def path(value: str) -> str:
    if not PATH_RE.fullmatch(value):
        raise ValueError(
            f"{value!r} is not an allowed path (letters, digits and . _ / + @ - only; no spaces, quotes or shell/nginx syntax)"
        )
    if any(part == ".." for part in value.split("/")):
        raise ValueError(f"{value!r} may not contain '..'")
    return value


def url_prefix(value: str) -> str:
    if not URL_PREFIX_RE.fullmatch(value) or any(part in (".", "..") for part in value.split("/")):
        raise ValueError(f"{value!r} is not a valid URL prefix (like '/static/': starts and ends with '/', letters, digits, . _ ~ -)")
    return value


def wsgi_file(value: str) -> tuple[str, str | None] | None:
    """A .py entry point as (file, callable or None: uWSGI's default ``application``); None for a module."""
    if value.endswith(".py"):
        return value, None
    file, sep, attr = value.rpartition(":")
    if sep and file.endswith(".py"):
        return file, attr
    return None


def wsgi(value: str) -> str:
    """'package.module[:callable]', or a .py file: 'app.py' (calls ``application``) or 'app.py:callable'."""
    found = wsgi_file(value)
    if found:
        path(found[0])
        if found[1] is not None and not IDENTIFIER_RE.fullmatch(found[1]):
            raise ValueError(f"{found[1]!r} in {value!r} is not a Python name (use 'app.py:callable')")
        return value
    if not MODULE_RE.fullmatch(value):
        raise ValueError(f"{value!r} is not a WSGI entry point (use 'package.module:callable', or a .py file: "
                         "'app.py' calls its 'application', 'app.py:app' calls 'app')")
    return value


def size(value: str | int) -> int:
    """``'256M'`` -> bytes. Plain integers are bytes."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a size (use a number with K, M, G or T, e.g. 256M)")
    if isinstance(value, int):
        if value <= 0:
            raise ValueError(f"{value!r} is not a positive size")
        return value
    match = SIZE_RE.fullmatch(value.strip()) if isinstance(value, str) else None
    if not match or int(match.group(1)) == 0:
        raise ValueError(f"{value!r} is not a valid size (use a number with K, M, G or T, e.g. 256M)")
    return int(match.group(1)) * SIZE_UNITS[match.group(2)]


def listen(value: str) -> str:
    """An nginx listen address: ``port``, ``host:port`` or ``[v6]:port``."""
    match = re.fullmatch(r"^(?:(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):)?([0-9]{1,5})$", value)
    if not match or not 0 < int(match.group(2)) < 65536:
        raise ValueError(f"{value!r} is not a listen address (use 'PORT' or 'HOST:PORT', e.g. '127.0.0.1:8080')")
    return value


def listen_v6(value: str) -> str:
    """``auto``, ``off`` or an IPv6 listen address (``[::]:80``)."""
    if value in ("auto", "off"):
        return value
    if not value.startswith("["):
        raise ValueError(f"{value!r} is not 'auto', 'off' or an IPv6 listen address (e.g. '[::]:80')")
    return listen(value)


def absolute_path(value: str) -> str:
    """A path on a remote server: absolute, since nothing there is relative to the inventory."""
    path(value)
    if not value.startswith("/"):
        raise ValueError(f"{value!r} is not an absolute path (paths on a host start with '/')")
    return value


def address(value: str) -> str:
    """An SSH address: a host name or an IPv4/IPv6 address."""
    if not re.fullmatch(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|[0-9a-fA-F:.]+)$", value):
        raise ValueError(f"{value!r} is not a host name or IP address")
    return value


EMAIL_RE = re.compile(r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+$")
URL_RE = re.compile(r"^https?://[A-Za-z0-9.-]+(?::[0-9]{1,5})?(?:/[A-Za-z0-9._~/%+-]*)?$")


def email(value: str) -> str:
    if not EMAIL_RE.fullmatch(value):
        raise ValueError(f"{value!r} is not an email address")
    return value


def url(value: str) -> str:
    """An ACME directory URL (never rendered into a config file, only fetched)."""
    if not URL_RE.fullmatch(value):
        raise ValueError(f"{value!r} is not an http(s) URL (e.g. 'https://acme-v02.api.letsencrypt.org/directory')")
    return value


COMMAND_MAX = 4096
CRON_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("day of week", 0, 6))


def command(value: str) -> str:
    """A shell command run as the customer (workers, cron, release hooks): one line that reads back exactly."""
    if not value.strip():
        raise ValueError("is empty; give a command")
    env_value(value)  # no control characters, no '%(', no trailing white space
    if len(value) > COMMAND_MAX:
        raise ValueError(f"is {len(value)} characters long; at most {COMMAND_MAX} are allowed")
    return value


def cron_schedule(value: str) -> str:
    """Five crontab fields, each '*', '*/N' or a number (what uWSGI's cron can run)."""
    fields = value.split()
    if len(fields) != 5 or " ".join(fields) != value:
        raise ValueError(f"{value!r} is not a schedule (five fields separated by single spaces, e.g. '*/15 * * * *')")
    for text, (what, low, high) in zip(fields, CRON_FIELDS):
        number = text[2:] if text.startswith("*/") else text
        if text == "*":
            continue
        if not number.isdigit() or not (1 if text.startswith("*/") else low) <= int(number) <= high:
            raise ValueError(f"{value!r}: the {what} field {text!r} is not '*', '*/N' or a number from {low} to {high} "
                             "(uWSGI's cron has no lists or ranges)")
    return value
