"""The server names of the live nginx configuration, from ``nginx -T``, and the customers that collide with them.

``nginx -T`` prints every file of the live configuration after a
``# configuration file PATH:`` line. hostctl needs the ``server_name`` and
``listen`` of every http server that it did not write (files outside its own
``nginx_dir``), so that a customer's domain can be refused when it collides with
the operator's own vhosts: nginx itself only warns about that, and ``-q`` hides
the warning. The tokenizer knows nginx's quoting and comments; blocks inside
``stream``, ``mail``, ``upstream``, ``map``, ``types``, ``geo``, ``split_clients``
and ``match`` are skipped.

The engine runs ``nginx -T`` on the server it changes (``live_foreign``) and holds
back a customer whose new server block names a domain that another server of that
host serves on a shared address (``collisions``), naming that server's file and
line; a local ``validate``/``apply`` uses the same parsing and name rules to
report the customer's file and field. Standard library only (part of the engine).
"""

from __future__ import annotations

import re
import shlex
import subprocess
from dataclasses import dataclass
from typing import Mapping

from hostctl.engine.core.errors import EngineError

HEADER = re.compile(r"^# configuration file (.+):$")
NOT_HTTP = {"stream", "mail", "upstream", "map", "types", "geo", "split_clients", "match", "charset_map"}
DEFAULT_PORT = "80"
DUMP_TIMEOUT = 60
PROBE_LABEL = "hostctl-probe-label"  # stands for "any label" when a wildcard is matched against a pattern


@dataclass(frozen=True)
class Server:
    file: str
    line: int
    names: tuple[str, ...]
    listens: tuple[tuple[str, str], ...]  # (address or "*", port)

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


def split_files(dump: str) -> list[tuple[str, str]]:
    """[(path, text)] in the order ``nginx -T`` printed them."""
    files: list[tuple[str, list[str]]] = []
    for line in dump.splitlines():
        match = HEADER.match(line)
        if match:
            files.append((match.group(1), []))
        elif files:
            files[-1][1].append(line)
    return [(path, "\n".join(lines)) for path, lines in files]


def tokens(text: str) -> list[tuple[str, int]]:
    """(token, line) pairs; ``{``, ``}`` and ``;`` are tokens of their own; quotes are removed."""
    out: list[tuple[str, int]] = []
    i, line, n = 0, 1, len(text)
    while i < n:
        c = text[i]
        if c == "\n":
            line += 1
            i += 1
        elif c.isspace():
            i += 1
        elif c == "#":
            while i < n and text[i] != "\n":
                i += 1
        elif c in "{};":
            out.append((c, line))
            i += 1
        elif c in "\"'":
            start_line, j, buf = line, i + 1, []
            while j < n and text[j] != c:
                if text[j] == "\\" and j + 1 < n:
                    j += 1
                if text[j] == "\n":
                    line += 1
                buf.append(text[j])
                j += 1
            out.append(("".join(buf), start_line))
            i = j + 1
        else:
            j = i
            while j < n and not text[j].isspace() and text[j] not in "{};":
                j += 1
            out.append((text[i:j], line))
            i = j
    return out


def _listen(args: list[str]) -> tuple[str, str]:
    addr = args[0] if args else DEFAULT_PORT
    if addr.startswith("unix:"):
        return addr, ""
    if addr.startswith("["):
        host, _, port = addr.partition("]")
        return host + "]", port.lstrip(":") or DEFAULT_PORT
    if addr.isdigit():
        return "*", addr
    host, sep, port = addr.rpartition(":")
    if not sep:
        return addr, DEFAULT_PORT
    return ("*" if host in ("*", "0.0.0.0") else host), port


def servers(path: str, text: str) -> list[Server]:
    """The http ``server { }`` blocks of one file."""
    toks = tokens(text)
    out: list[Server] = []
    stack: list[str] = []  # names of the open blocks
    current: list[tuple[int, list[str], list[list[str]], int]] = []  # (line, names, listens, depth) per open server
    statement: list[tuple[str, int]] = []
    for tok, line in toks:
        if tok == "{":
            name = statement[0][0] if statement else ""
            in_http = not any(b in NOT_HTTP for b in stack)
            stack.append(name)
            if name == "server" and in_http:
                current.append((statement[0][1], [], [], len(stack)))
            statement = []
        elif tok == "}":
            if current and current[-1][3] == len(stack):
                start, names, listens, _depth = current.pop()
                out.append(Server(path, start, tuple(names), tuple(_listen(a) for a in (listens or [[]]))))
            if stack:
                stack.pop()
            statement = []
        elif tok == ";":
            if statement and current and current[-1][3] == len(stack):
                key, args = statement[0][0], [t for t, _ in statement[1:]]
                if key == "server_name":
                    current[-1][1].extend(args)
                elif key == "listen":
                    current[-1][2].append(args)
            statement = []
        else:
            statement.append((tok, line))
    return out


def foreign_servers(dump: str, own_dirs: tuple[str, ...]) -> list[Server]:
    """Every http server of the dump whose file is not inside one of ``own_dirs``."""
    prefixes = tuple(d.rstrip("/") + "/" for d in own_dirs)
    return [server for path, text in split_files(dump) if not path.startswith(prefixes) for server in servers(path, text)]


def shares_listen(a: tuple[tuple[str, str], ...], b: tuple[tuple[str, str], ...]) -> bool:
    """Whether two servers answer on a common address:port (a wildcard address meets every address)."""
    for addr, port in a:
        for other, other_port in b:
            if port != other_port or addr.startswith("[") != other.startswith("["):  # IPv6 sockets are v6-only
                continue
            if addr == other or {addr, other} & {"*", "[::]"}:
                return True
    return False


def hostctl_listens(listens: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """hostctl's ``listen`` settings in the same form as a parsed server's."""
    return tuple(_listen([value]) for value in listens)


# --- whether names overlap (nginx's server_name semantics) ------------------------------------


def covers(wildcard: str, name: str) -> bool:
    """Whether the leading wildcard ``*.s`` matches every name of ``name`` (an exact name or ``*.t``)."""
    if not wildcard.startswith("*."):
        return False
    suffix = wildcard[1:]  # ".s"
    base = name[2:] if name.startswith("*.") else name
    return base.endswith(suffix) or (name.startswith("*.") and base == wildcard[2:])


def overlap(a: str, b: str) -> bool:
    """Whether two customer-style names (exact or ``*.``) can both match one Host."""
    return a == b or covers(a, b) or covers(b, a)


def foreign_overlap(domain: str, pattern: str) -> bool:
    """Whether the customer name ``domain`` (exact or ``*.x``) and a foreign server_name overlap.

    ``pattern`` is any nginx server_name form: exact, ``*.a``, ``.a``, ``a.*`` or ``~regex``.
    """
    pattern = pattern.lower()
    if pattern in ("", "_"):
        return False
    if pattern.startswith("."):
        return foreign_overlap(domain, pattern[1:]) or foreign_overlap(domain, "*" + pattern)
    if pattern.startswith("~"):
        try:
            regex = re.compile(pattern[1:])
        except re.error:
            return False
        sample = PROBE_LABEL + domain[1:] if domain.startswith("*.") else domain
        return bool(regex.search(sample))
    if pattern.endswith(".*"):
        # "mail.*" and "*.a.org" always share "mail.a.org"
        return domain.startswith("*.") or domain.startswith(pattern[:-1])
    return overlap(domain, pattern)


# --- on the server: the live configuration, and who collides with it --------------------------


def live_foreign(dump_command: str | None, own_dirs: tuple[str, ...]) -> list[Server]:
    """The http servers of this host's live nginx configuration (``dump_command``, ``nginx -T``) outside ``own_dirs``.

    No command, or no nginx on this host: none. A command that fails raises (the other servers cannot be known)."""
    argv = shlex.split(dump_command or "")
    if not argv:
        return []
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, errors="replace", timeout=DUMP_TIMEOUT)
    except FileNotFoundError:
        return []
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EngineError(f"`{dump_command}` could not run: {exc}; nothing was changed") from exc
    if proc.returncode != 0:
        raise EngineError(f"`{dump_command}` failed, so customer domains cannot be checked against the other servers "
                          f"of this host; nothing was changed: {proc.stderr.strip()[-500:]}")
    return foreign_servers(proc.stdout, own_dirs)


def collision(domain: str, listens: tuple[tuple[str, str], ...], foreign: list[Server]) -> str | None:
    """Why ``domain`` (served on ``listens``) collides with a server of ``foreign``, or None."""
    for server in foreign:
        if not shares_listen(server.listens, listens):
            continue
        clash = next((name for name in server.names if foreign_overlap(domain, name)), None)
        if clash is not None:
            return (f"{domain!r} collides with server_name {clash!r} of a server hostctl did not write "
                    f"({server.where}); nginx would send one of them the other's visitors")
    return None


def collisions(blocks: Mapping[str, tuple[str, str]], foreign: list[Server]) -> list[tuple[str, str, str]]:
    """(customer, block path, why) for each candidate server block (path -> (customer, text)) with a name that
    collides with a server of ``foreign``; one per block."""
    out = []
    for path, (customer, text) in sorted(blocks.items()):
        for server in servers(path, text):
            why = next(filter(None, (collision(name.lower(), server.listens, foreign) for name in server.names)), None)
            if why is not None:
                out.append((customer, path, why))
                break
    return out
