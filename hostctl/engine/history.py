"""What was applied, kept in ``state_dir``: generations for rollback, and the quarantine record.

Every apply (and every rollback) that changes something records a generation:
``state_dir/generations/NNNNNN.json`` lists every live file hostctl manages
(path, hash, kind, customer, app, mode) and a snapshot of the inventory files
it came from. File contents are stored once per distinct content in
``generations/blobs/<sha256>``, so an apply that changes one customer out of a
thousand writes one or two blobs. The newest ``KEEP`` generations are kept.

``quarantine.json`` holds the customers the last apply held back, and why
(``quarantined(settings)`` is the reader for ``plan`` and ``status``).
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

from hostctl.engine import fsops
from hostctl.errors import HostctlError
from hostctl.inventory.schema import Settings
from hostctl.plan.manifest import Manifest, sha256
from hostctl.plan.quarantine import Rejection

KEEP = 10
_NAME = re.compile(r"^([0-9]{6})\.json$")


def _dir(settings: Settings) -> str:
    return os.path.join(settings.state_dir, "generations")


def _blobs(settings: Settings) -> str:
    return os.path.join(_dir(settings), "blobs")


def quarantine_file(settings: Settings) -> str:
    return os.path.join(settings.state_dir, "quarantine.json")


# --- the quarantine record ----------------------------------------------------------


def quarantined(settings: Settings) -> dict[str, str]:
    """Customers the last apply held back: ``{customer: "file: reason"}`` (empty when none)."""
    return {name: f"{item['file']}: {item['reason']}" for name, item in read_quarantine(settings).items()}


def read_quarantine(settings: Settings) -> dict[str, dict[str, str]]:
    try:
        with open(quarantine_file(settings), encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        return {}
    except ValueError:
        return {}
    return data.get("customers", {}) if isinstance(data, dict) else {}


def save_quarantine(settings: Settings, rejections: Iterable[Rejection], when: float) -> None:
    """Replace the record with this apply's rejections (one entry per customer, reasons joined)."""
    customers: dict[str, dict[str, str]] = {}
    for r in sorted(rejections):
        item = customers.setdefault(r.customer, {"file": r.file, "reason": r.reason, "since": _iso(when)})
        if r.reason not in item["reason"]:
            item["reason"] += f"; {r.reason}"
    body = json.dumps({"customers": customers}, indent=1, sort_keys=True) + "\n"
    os.makedirs(settings.state_dir, mode=0o700, exist_ok=True)
    fsops.write_atomic(quarantine_file(settings), body.encode(), 0o600)


def _iso(when: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))


# --- generations --------------------------------------------------------------------


@dataclass(frozen=True)
class FileRecord:
    sha256: str
    kind: str
    customer: str
    app: str
    mode: int


@dataclass(frozen=True)
class Generation:
    number: int
    time: str
    source: str  # "apply" or "rollback"
    note: str
    base: int  # the applied generation this one stands for (a full rollback goes before it)
    origin: dict[str, int]  # customer -> generation its files come from (a rollback of it goes before it)
    files: dict[str, FileRecord] = field(default_factory=dict)
    inventory: dict[str, str] = field(default_factory=dict)  # relative path -> text

    def customer_files(self, customer: str) -> dict[str, FileRecord]:
        return {p: f for p, f in self.files.items() if f.customer == customer}

    def to_json(self) -> str:
        data = {k: v for k, v in vars(self).items() if k != "files"}
        data["files"] = {p: vars(f) for p, f in sorted(self.files.items())}
        return json.dumps(data, sort_keys=True, separators=(",", ":")) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "Generation":
        data = json.loads(text)
        data["files"] = {p: FileRecord(**f) for p, f in data["files"].items()}
        data["origin"] = {c: int(n) for c, n in data["origin"].items()}
        return cls(**data)


def numbers(settings: Settings) -> list[int]:
    try:
        names = os.listdir(_dir(settings))
    except FileNotFoundError:
        return []
    return sorted(int(m.group(1)) for m in map(_NAME.match, names) if m)


def path(settings: Settings, number: int) -> str:
    return os.path.join(_dir(settings), f"{number:06d}.json")


def load(settings: Settings, number: int) -> Generation:
    path = os.path.join(_dir(settings), f"{number:06d}.json")
    try:
        with open(path, encoding="utf-8") as fh:
            return Generation.from_json(fh.read())
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise HostctlError(f"{path}: cannot read generation {number} ({exc})") from exc


def latest(settings: Settings) -> Generation | None:
    found = numbers(settings)
    return load(settings, found[-1]) if found else None


def blob(settings: Settings, digest: str) -> str | None:
    try:
        with open(os.path.join(_blobs(settings), digest), encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        return None
    return text if sha256(text) == digest else None


def snapshot_inventory(root: Path) -> dict[str, str]:
    """The inventory's own files (settings and customers) as text."""
    out = {}
    candidates = [root / "hostctl.yaml", *sorted((root / "customers").glob("*.yaml"))]
    for path in candidates:
        try:
            out[str(path.relative_to(root))] = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
    return out


def record(settings: Settings, manifest: Manifest, contents: Mapping[str, str], modes: Mapping[str, int], *,
           source: str, note: str, inventory: Mapping[str, str], base: int | None = None,
           origin: Mapping[str, int] | None = None, when: float | None = None) -> Generation:
    """Write a new generation for the files in ``manifest``; ``contents`` holds the texts it may need."""
    when = time.time() if when is None else when
    os.makedirs(_blobs(settings), mode=0o700, exist_ok=True)
    found = numbers(settings)
    number = (found[-1] + 1) if found else 1
    files = {}
    for path, entry in manifest.files.items():
        text = contents.get(path)
        if text is not None and sha256(text) == entry.sha256 and not os.path.exists(os.path.join(_blobs(settings), entry.sha256)):
            # Not fsynced (an fsync per file would double the cost of a large apply): a blob lost
            # in a crash fails its hash check, and only a rollback to that generation is refused.
            fsops.write_atomic(os.path.join(_blobs(settings), entry.sha256), text.encode("utf-8"), 0o600, durable=False)
        files[path] = FileRecord(entry.sha256, entry.kind, entry.customer, entry.app, modes.get(path, 0o644))
    customers = {f.customer for f in files.values()}
    gen = Generation(number, _iso(when), source, note, number if base is None else base,
                     {c: (origin or {}).get(c, number) for c in customers}, files, dict(inventory))
    fsops.write_atomic(os.path.join(_dir(settings), f"{number:06d}.json"), gen.to_json().encode(), 0o600)
    prune(settings)
    return gen


def prune(settings: Settings, keep: int = KEEP) -> None:
    """Drop all but the newest ``keep`` generations, and blobs none of them uses."""
    found = numbers(settings)
    if len(found) <= keep:
        return
    for number in found[:-keep]:
        fsops.remove(os.path.join(_dir(settings), f"{number:06d}.json"))
    used = set()
    for number in found[-keep:]:  # only the hashes: far cheaper than loading whole generations
        try:
            with open(path(settings, number), encoding="utf-8") as fh:
                used |= {f["sha256"] for f in json.load(fh)["files"].values()}
        except (OSError, ValueError, KeyError, TypeError):
            return  # an unreadable generation: keep every blob rather than guess

    try:
        names = os.listdir(_blobs(settings))
    except FileNotFoundError:
        return
    for name in names:
        if name not in used and not name.startswith("."):
            fsops.remove(os.path.join(_blobs(settings), name))


# --- the listing of `rollback --list` -------------------------------------------------


def changed_customers(before: Generation | None, after: Generation) -> list[str]:
    """Customers whose files differ between two generations (added, changed or removed)."""
    old = {p: (f.sha256, f.customer) for p, f in (before.files if before else {}).items()}
    new = {p: (f.sha256, f.customer) for p, f in after.files.items()}
    return sorted({c for p, (_, c) in old.items() if new.get(p) != old[p]} | {c for p, (_, c) in new.items() if old.get(p) != new[p]})


def listing(gens: list[Generation], live: Mapping[str, str], first_kept: bool) -> list[str]:
    """One line per generation: number, time, source, files, note, the customers it changed, and
    ``<- live`` on the one whose files are the live ones (``live``: path -> sha256 from the manifest).
    ``first_kept``: the oldest one is the first ever (nothing was pruned before it), so it changed
    every customer it has."""
    live = dict(live)
    lines, matched = [], False
    for i, gen in enumerate(gens):
        if i == 0 and not first_kept:
            changed = "? (the generation before it was pruned)"
        else:
            names = changed_customers(gens[i - 1] if i else None, gen)
            changed = ", ".join(names) or "none"
        is_live = {p: f.sha256 for p, f in gen.files.items()} == live
        matched = matched or is_live
        lines.append(f"{gen.number:6d}  {gen.time}  {gen.source:8s}  {len(gen.files)} files  {gen.note}  changed: {changed}"
                     + ("  <- live" if is_live else ""))
    if gens and not matched:
        lines.append("no kept generation matches the live files (an apply was interrupted, or files changed since)")
    return lines
