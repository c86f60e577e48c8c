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


def _digest_tree(digest: "hashlib._Hash", base: Path, label: str) -> None:
    if base.is_file():
        digest.update(f"\0{label}\0".encode())
        digest.update(base.read_bytes())
        return
    if not base.is_dir():
        return
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            digest.update(f"\0{label}/{path.relative_to(base)}\0".encode())
            try:
                digest.update(path.read_bytes())
            except OSError as exc:  # unreadable: never equal to a cached fingerprint
                digest.update(f"unreadable {exc.errno} {os.urandom(8).hex()}".encode())


def fingerprint(root: str) -> str:
    """A hash of everything rendering depends on: the inventory's files, hostctl's code and templates."""
    digest = hashlib.sha256(f"hostctl-deploy-cache {VERSION} {root}".encode())
    for part in INVENTORY_PARTS:
        _digest_tree(digest, Path(root) / part, part)
    for path in sorted(_CODE.rglob("*")):
        if path.suffix in (".py", ".j2") and "__pycache__" not in path.parts:
            digest.update(f"\0code/{path.relative_to(_CODE)}\0".encode())
            digest.update(path.read_bytes())
    from hostctl import templates

    _digest_tree(digest, templates.packaged_templates(), "packaged-templates")
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


def remember(root: str, fp: str, digests: dict[str, str]) -> None:
    """Record ``digests`` for fingerprint ``fp`` (merged with those already recorded for it). Best effort."""
    merged = {**expected_digests(root, fp), **digests}
    path = _path(root)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".deploy-", suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            json.dump({"fingerprint": fp, "digests": merged}, fh)
        os.replace(tmp, path)
    except OSError:
        pass  # a cache that cannot be written only costs speed
