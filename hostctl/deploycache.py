"""Remember, per inventory, what each host's state digest should be for the inventory's exact bytes.

Rendering is a pure function of the inventory's files, hostctl's code and its
templates (remote hosts' identity comes from the settings alone). So when
nothing of that changed since a deploy, the digest each host should answer
(``remote.expected_digest``) is already known, and a redeploy whose hosts all
answer it needs neither loading thousands of customer files nor rendering
them. The cache lives in ``$XDG_CACHE_HOME/hostctl`` (default ``~/.cache``);
deleting it is always safe.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import hostctl

VERSION = 1
INVENTORY_PARTS = ("hostctl.yaml", "customers", "templates")  # what rendering reads from an inventory
_CODE = Path(hostctl.__file__).resolve().parent


def _digest_tree(digest: "hashlib._Hash", base: str, label: str) -> None:
    """Names and bytes of ``base`` (a file, or a directory walked in sorted order) into ``digest``."""
    try:
        entries = sorted(os.scandir(base), key=lambda e: e.name)
    except NotADirectoryError:
        entries = None
    except OSError:
        return
    if entries is None:
        digest.update(f"\0{label}\0".encode())
        digest.update(_bytes(base))
        return
    for entry in entries:
        if entry.is_dir():
            _digest_tree(digest, entry.path, f"{label}/{entry.name}")
        else:
            digest.update(f"\0{label}/{entry.name}\0".encode())
            digest.update(_bytes(entry.path))


def _bytes(path: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:  # unreadable: never equal to a cached fingerprint
        return f"unreadable {exc.errno} {os.urandom(8).hex()}".encode()


def fingerprint(root: str) -> str:
    """A hash of everything rendering depends on: the inventory's files, hostctl's code and templates."""
    digest = hashlib.sha256(f"hostctl-deploy-cache {VERSION} {root}".encode())
    for part in INVENTORY_PARTS:
        _digest_tree(digest, os.path.join(root, part), part)
    for path in sorted(_CODE.rglob("*")):
        if path.suffix in (".py", ".j2") and "__pycache__" not in path.parts:
            digest.update(f"\0code/{path.relative_to(_CODE)}\0".encode())
            digest.update(path.read_bytes())
    from hostctl import templates

    _digest_tree(digest, str(templates.packaged_templates()), "packaged-templates")
    return digest.hexdigest()


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
    return {str(k): str(v) for k, v in data["digests"].items()}


def remember(root: str, fp: str, listings: dict[str, str]) -> None:
    """Record each host's expected state listing for fingerprint ``fp``: its digest, and the text. Best effort.

    The texts let the next deploy skip reading a host in full when the host still
    answers that digest (the inventory changed, the host did not).
    """
    digests = {host: hashlib.sha256(text.encode()).hexdigest() for host, text in listings.items()}
    merged = {**expected_digests(root, fp), **digests}
    _write(_path(root), json.dumps({"fingerprint": fp, "digests": merged}))
    for host, text in listings.items():
        _write(_listing_path(root, host), text)


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
