"""Remember, per inventory, what each host's state digest should be for the inventory's exact bytes.

Rendering is a pure function of the inventory's files, hostctl's code and its
templates (remote hosts' identity comes from the settings alone). So when
nothing of that changed since a deploy, the digest each host should answer
(``remote.expected_digest``) is already known, and a redeploy whose hosts all
answer it needs neither loading thousands of customer files nor rendering
them. The cache lives in ``$XDG_CACHE_HOME/hostctl`` (default ``~/.cache``);
deleting it is always safe.

The same holds per host: a host's files depend only on the shared inputs and on
the files of the customers placed on it, so when one customer changes, the
hosts it is not on (and that still answer their recorded digest) are not
rendered either.

Each host's state after the last deploy from this machine (its listing and facts) is
kept too (``remember_state``): `plan --host NAME --offline` plans against it with no SSH.

TLS adds inputs outside the customer files and a clock: a customer with
``tls:`` has the certificate files it names and this machine's ``tls.cert_dir``
mixed in (by inode, size and mtime), and a host's record holds only until its
first certificate expires or comes due for renewal (``until``); a host left with
a customer held for its certificate is not recorded at all, so the next deploy
reports it and tries again.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

import hostctl

VERSION = 1
CUSTOMERS = "customers"
INVENTORY_PARTS = ("hostctl.yaml", CUSTOMERS, "templates")  # what rendering reads from an inventory
_CODE = Path(hostctl.__file__).resolve().parent


def _bytes(path: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:  # unreadable: never equal to a cached fingerprint
        return f"unreadable {exc.errno} {os.urandom(8).hex()}".encode()


def _files(base: str, label: str) -> Iterator[tuple[str, str]]:
    """``(label/relative path, sha256)`` of ``base`` (a file, or every file below a directory), sorted."""
    try:
        entries = sorted(os.scandir(base), key=lambda e: e.name)
    except NotADirectoryError:
        yield label, hashlib.sha256(_bytes(base)).hexdigest()
        return
    except OSError:
        return
    for entry in entries:
        if entry.is_dir():
            yield from _files(entry.path, f"{label}/{entry.name}")
        else:
            yield f"{label}/{entry.name}", hashlib.sha256(_bytes(entry.path)).hexdigest()


@dataclass(frozen=True)
class Inputs:
    """What rendering reads, hashed: the parts every host shares, and each customer file on its own."""

    shared: str  # hostctl.yaml, the inventory's templates, hostctl's code and packaged templates, the root
    customers: dict[str, str]  # "customers/NAME.yaml" -> sha256 of its bytes

    @property
    def fingerprint(self) -> str:
        """Of the whole inventory: any byte changed anywhere changes it."""
        return _combine(self.shared, sorted(self.customers.items()))

    def for_host(self, files: Iterable[str]) -> str:
        """Of what one host's files are rendered from: the shared parts and that host's customers' files."""
        return _combine(self.shared, sorted((f, self.customers.get(f, "missing")) for f in files))


def _combine(shared: str, items: list[tuple[str, str]]) -> str:
    digest = hashlib.sha256(shared.encode())
    for name, value in items:
        digest.update(f"\0{name}\0{value}".encode())
    return digest.hexdigest()


def inputs(root: str) -> Inputs:
    """Hash the inventory at ``root`` and hostctl itself (reads files, nothing else)."""
    from hostctl.render import templates

    import jinja2
    import pydantic

    # the libraries that shape the output count too (an upgrade re-renders once)
    shared = hashlib.sha256(f"hostctl-deploy-cache {VERSION} {root} jinja2 {jinja2.__version__} "
                            f"pydantic {pydantic.VERSION}".encode())
    parts = [_files(os.path.join(root, p), p) for p in INVENTORY_PARTS if p != CUSTOMERS]
    parts.append(_files(str(templates.packaged_templates()), "packaged-templates"))
    for part in parts:
        for name, value in part:
            shared.update(f"\0{name}\0{value}".encode())
    for path in sorted(_CODE.rglob("*")):
        if path.suffix in (".py", ".j2") and "__pycache__" not in path.parts:
            shared.update(f"\0code/{path.relative_to(_CODE)}\0".encode())
            shared.update(path.read_bytes())
    customers = dict(_files(os.path.join(root, CUSTOMERS), CUSTOMERS))
    cert_dir: list[str] = []  # computed once, when a customer has tls:

    def certificates() -> str:
        if not cert_dir:
            from hostctl.inventory import placement

            settings = placement.peek_settings(root)
            cert_dir.append(_tree(os.path.join(root, settings.tls.cert_dir if settings else "certs")))
        return cert_dir[0]

    return Inputs(shared.hexdigest(), {rel: _with_env_file(root, rel, digest, certificates) for rel, digest in customers.items()})


_ENV_FILE = re.compile(rb"^env_file:[ \t]*['\"]?([^'\"\n#]+?)['\"]?[ \t]*(?:#.*)?$", re.M)


_TLS = re.compile(rb"^[ \t]+tls:", re.M)
_TLS_FILE = re.compile(rb"\b(?:certificate|key):[ \t]*['\"]?([^'\",}\s#]+)")  # block or flow style; extra matches only cost speed


def _stat(path: str) -> str:
    try:
        st = os.stat(path)
    except OSError:
        return f"{path}\0missing"
    return f"{path}\0{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"


def _tree(top: str) -> str:
    """Every file under ``top``, by stat (the ACME certificates this machine keeps)."""
    digest = hashlib.sha256()
    for dirpath, dirs, files in os.walk(top):
        dirs.sort()
        for name in sorted(files):
            digest.update(f"\0{_stat(os.path.join(dirpath, name))}".encode())
    return digest.hexdigest()


def _with_env_file(root: str, rel: str, digest: str, certificates: Callable[[], str] = lambda: "") -> str:
    """A customer file's digest, with the bytes of the ``env_file:`` it names mixed in (its secrets render too),
    and with ``tls:``, the certificate files it names and ``certificates()`` (this machine's cert_dir)."""
    data = _bytes(os.path.join(root, rel))
    if _TLS.search(data):
        named = "\0".join(_stat(os.path.join(root, os.fsdecode(m.group(1)))) for m in _TLS_FILE.finditer(data))
        digest = hashlib.sha256(f"{digest}\0tls\0{certificates()}\0{named}".encode()).hexdigest()
    match = _ENV_FILE.search(data)
    if not match:
        return digest
    path = os.path.join(root, os.fsdecode(match.group(1)))
    return hashlib.sha256(f"{digest}\0{hashlib.sha256(_bytes(path)).hexdigest()}".encode()).hexdigest()


def fingerprint(root: str) -> str:
    """A hash of everything rendering depends on: the inventory's files, hostctl's code and templates."""
    return inputs(root).fingerprint


def _path(root: str) -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hostctl"
    return base / f"deploy-{hashlib.sha256(root.encode()).hexdigest()[:24]}.json"


def expected_digests(root: str, fp: str) -> dict[str, str]:
    """``{host: expected state digest}`` recorded for fingerprint ``fp`` of the inventory at ``root`` ({} if none)."""
    try:
        data = json.loads(_path(root).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("fingerprint") != fp or not isinstance(data.get("digests"), dict):
        return {}
    until = data.get("until") if isinstance(data.get("until"), dict) else {}
    now = time.time()
    return {str(k): str(v) for k, v in data["digests"].items() if not (isinstance(until.get(k), (int, float)) and until[k] <= now)}


def remember(root: str, fp: str, listings: dict[str, str], known: dict[str, str] | None = None,
             answers: dict[str, str] | None = None, until: dict[str, float | None] | None = None) -> None:
    """Record each host's expected state listing for fingerprint ``fp``: its digest, and the text. Best effort.

    The texts let the next deploy skip reading a host in full when the host still
    answers that digest (the inventory changed, the host did not). ``known``: digests
    of hosts not rendered this time (they were in sync), recorded for ``fp`` too.
    ``until``: a host's record holds until then (epoch seconds; None: no limit; 0: not at all).
    """
    digests = answers if answers is not None else {host: hashlib.sha256(text.encode()).hexdigest() for host, text in listings.items()}
    merged = {**expected_digests(root, fp), **(known or {}), **digests}
    records = _hosts(_path(root).with_suffix(".hosts.json"))  # hosts not rendered now keep the limit recorded for them
    kept = {h: float(r[2]) for h in (known or {}) if isinstance(r := records.get(h), list) and len(r) == 3 and isinstance(r[2], (int, float))}
    limits = {**_until(root, fp), **kept, **(until or {})}
    limits = {h: t for h, t in limits.items() if t is not None and h in merged}
    for host in [h for h, t in limits.items() if t <= time.time()]:
        merged.pop(host, None)
    _write(_path(root), json.dumps({"fingerprint": fp, "digests": merged, "until": {h: t for h, t in limits.items() if h in merged}}))
    for host, text in listings.items():
        _write(_listing_path(root, host), text)


def _until(root: str, fp: str) -> dict[str, float]:
    try:
        data = json.loads(_path(root).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("fingerprint") != fp or not isinstance(data.get("until"), dict):
        return {}
    return {str(h): float(t) for h, t in data["until"].items() if isinstance(t, (int, float))}


def remember_hosts(root: str, records: dict[str, tuple[str, str]], until: dict[str, float | None] | None = None) -> None:
    """Record ``{host: (host fingerprint, expected digest)}`` (merged with the hosts recorded before);
    ``until`` as for ``remember``."""
    path = _path(root).with_suffix(".hosts.json")
    limits = until or {}
    merged = {**_hosts(path), **{h: [*v, limits[h]] if limits.get(h) is not None else list(v) for h, v in records.items()}}
    _write(path, json.dumps(merged))


def host_digest(root: str, host: str, host_fp: str) -> str | None:
    """The digest ``host`` should answer if its files were rendered from inputs with fingerprint ``host_fp``."""
    record = _hosts(_path(root).with_suffix(".hosts.json")).get(host)
    if not isinstance(record, list) or len(record) not in (2, 3) or record[0] != host_fp:
        return None
    if len(record) == 3 and (not isinstance(record[2], (int, float)) or record[2] <= time.time()):
        return None
    return record[1]


def _hosts(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def listing(root: str, host: str, digest: str) -> str | None:
    """The state listing last expected on ``host``, if ``digest`` (what the host answered now) is its digest."""
    try:
        text = _listing_path(root, host).read_text()
    except OSError:
        return None
    return text if hashlib.sha256(text.encode()).hexdigest() == digest else None


def _listing_path(root: str, host: str) -> Path:
    path = _path(root)
    return path.with_name(f"{path.stem}-{host}.listing")


def _write(path: Path, text: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".deploy-", suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except OSError:
        pass  # a cache that cannot be written only costs speed


# --- the last known state of each host, for `plan --host NAME --offline` -------------------


def remember_state(root: str, host: str, listing_text: str | None, facts: str | None, at: str, why: str | None = None) -> None:
    """Record what ``host`` holds after a deploy from this machine: its state listing and facts.

    ``listing_text`` None: the deploy ran there but did not finish as planned (``why``), so
    what the host holds is not known here; the record says so instead of keeping an old state.
    """
    data = {"version": VERSION, "host": host, "at": at, "listing": listing_text, "facts": facts, "unknown": why}
    _write(_state_path(root, host), json.dumps(data))


def last_state(root: str, host: str) -> dict | None:
    """The record ``remember_state`` left for ``host`` ({"at", "listing", "facts", "unknown"}), or None."""
    try:
        data = json.loads(_state_path(root, host).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("version") != VERSION or data.get("host") != host:
        return None
    listing_text, facts = data.get("listing"), data.get("facts")
    if not isinstance(data.get("at"), str) or not (listing_text is None or isinstance(listing_text, str)) \
            or not (facts is None or isinstance(facts, str)):
        return None
    return data


def state_path(root: str, host: str) -> str:
    return str(_state_path(root, host))


def _state_path(root: str, host: str) -> Path:
    path = _path(root)
    return path.with_name(f"{path.stem}-{host}.state.json")
