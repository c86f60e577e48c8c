"""What was applied on this server, kept in ``state_dir``: generations for rollback, and the quarantine record.

Every apply (and every rollback) that changes something records a generation:
``state_dir/generations/NNNNNN.json`` lists every live file hostctl manages
(path, hash, kind, customer, app, mode) and a snapshot of the inventory files
it came from. File contents are stored once per distinct content in
``generations/blobs/<sha256>``, so an apply that changes one customer out of a
thousand writes one or two blobs. The newest ``KEEP`` generations are kept.

``quarantine.json`` holds the customers the last apply held back, and why.
``choose`` and ``desired_files`` decide a rollback from the kept generations.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping

from hostctl.engine.core import fsops
from hostctl.engine.core.errors import EngineError
from hostctl.engine.core.manifest import Manifest, sha256
from hostctl.engine.core.plan import RenderedFile
from hostctl.engine.core.quarantine import Rejection

KEEP = 10
_NAME = re.compile(r"^([0-9]{6})\.json$")


def _dir(state_dir: str) -> str:
    return os.path.join(state_dir, "generations")


def _blobs(state_dir: str) -> str:
    return os.path.join(_dir(state_dir), "blobs")


def quarantine_file(state_dir: str) -> str:
    return os.path.join(state_dir, "quarantine.json")


# --- the quarantine record ----------------------------------------------------------


def read_quarantine(state_dir: str) -> dict[str, dict[str, str]]:
    try:
        with open(quarantine_file(state_dir), encoding="utf-8") as fh:
            data = json.load(fh)
    except FileNotFoundError:
        return {}
    except ValueError:
        return {}
    return data.get("customers", {}) if isinstance(data, dict) else {}


def save_quarantine(state_dir: str, rejections: Iterable[Rejection], when: float) -> None:
    """Replace the record with this apply's rejections (one entry per customer, reasons joined)."""
    customers: dict[str, dict[str, str]] = {}
    for r in sorted(rejections):
        item = customers.setdefault(r.customer, {"file": r.file, "reason": r.reason, "since": _iso(when)})
        if r.reason not in item["reason"]:
            item["reason"] += f"; {r.reason}"
    body = json.dumps({"customers": customers}, indent=1, sort_keys=True) + "\n"
    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    fsops.write_atomic(quarantine_file(state_dir), body.encode(), 0o600)


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


def numbers(state_dir: str) -> list[int]:
    try:
        names = os.listdir(_dir(state_dir))
    except FileNotFoundError:
        return []
    return sorted(int(m.group(1)) for m in map(_NAME.match, names) if m)


def path(state_dir: str, number: int) -> str:
    return os.path.join(_dir(state_dir), f"{number:06d}.json")


def load(state_dir: str, number: int) -> Generation:
    where = path(state_dir, number)
    try:
        with open(where, encoding="utf-8") as fh:
            return Generation.from_json(fh.read())
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise EngineError(f"{where}: cannot read generation {number} ({exc})") from exc


def latest(state_dir: str) -> Generation | None:
    found = numbers(state_dir)
    return load(state_dir, found[-1]) if found else None


def blob(state_dir: str, digest: str) -> str | None:
    try:
        with open(os.path.join(_blobs(state_dir), digest), encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError:
        return None
    return text if sha256(text) == digest else None


def record(state_dir: str, manifest: Manifest, contents: Mapping[str, str], modes: Mapping[str, int], *,
           source: str, note: str, inventory: Mapping[str, str], base: int | None = None,
           origin: Mapping[str, int] | None = None, when: float | None = None,
           live: Callable[[str], str | None] | None = None) -> Generation:
    """Write a new generation for the files in ``manifest``; ``contents`` holds the texts it may need.

    ``live(path)``: the file's live text, for a file whose blob is missing and whose
    content is not in ``contents`` (a host first deployed before generations existed).
    """
    when = time.time() if when is None else when
    os.makedirs(_blobs(state_dir), mode=0o700, exist_ok=True)
    found = numbers(state_dir)
    number = (found[-1] + 1) if found else 1
    files = {}
    for where, entry in manifest.files.items():
        stored = os.path.join(_blobs(state_dir), entry.sha256)
        if not os.path.exists(stored):
            text = contents.get(where)
            if (text is None or sha256(text) != entry.sha256) and live is not None:
                text = live(where)
            if text is not None and sha256(text) == entry.sha256:
                # Not fsynced (an fsync per file would double the cost of a large apply): a blob lost
                # in a crash fails its hash check, and only a rollback to that generation is refused.
                fsops.write_atomic(stored, text.encode("utf-8"), 0o600, durable=False)
        files[where] = FileRecord(entry.sha256, entry.kind, entry.customer, entry.app, modes.get(where, 0o644))
    customers = {f.customer for f in files.values()}
    gen = Generation(number, _iso(when), source, note, number if base is None else base,
                     {c: (origin or {}).get(c, number) for c in customers}, files, dict(inventory))
    fsops.write_atomic(path(state_dir, number), gen.to_json().encode(), 0o600)
    prune(state_dir)
    return gen


def prune(state_dir: str, keep: int = KEEP) -> None:
    """Drop all but the newest ``keep`` generations, and blobs none of them uses."""
    found = numbers(state_dir)
    if len(found) <= keep:
        return
    for number in found[:-keep]:
        fsops.remove(path(state_dir, number))
    used = set()
    for number in found[-keep:]:  # only the hashes: far cheaper than loading whole generations
        try:
            with open(path(state_dir, number), encoding="utf-8") as fh:
                used |= {f["sha256"] for f in json.load(fh)["files"].values()}
        except (OSError, ValueError, KeyError, TypeError):
            return  # an unreadable generation: keep every blob rather than guess
    try:
        names = os.listdir(_blobs(state_dir))
    except FileNotFoundError:
        return
    for name in names:
        if name not in used and not name.startswith("."):
            fsops.remove(os.path.join(_blobs(state_dir), name))


# --- choosing a rollback ------------------------------------------------------------


def choose(generations: list[Generation], customer: str | None) -> tuple[Generation, dict[str, int], int, str]:
    """Pure: the generation to restore from, and the new generation's origin, base and note.

    ``generations`` are ordered oldest first; the last one is live.
    """
    if not generations:
        raise EngineError("nothing has been applied yet; there is no generation to roll back to")
    live = generations[-1]
    if customer is None:
        older = [g for g in generations if g.number < live.base]
        if not older:
            raise EngineError(f"generation {live.base} is the oldest kept; there is nothing earlier to roll back to")
        target = older[-1]
        return target, {c: target.number for c in {f.customer for f in target.files.values()}}, target.number, f"rollback to generation {target.number}"
    current = _shape(live, customer)
    start = live.origin.get(customer, live.number)
    for gen in reversed(generations):
        if gen.number < start and _shape(gen, customer) != current:
            origin = dict(live.origin)
            origin[customer] = gen.number
            return gen, origin, live.base, f"rollback of {customer} to generation {gen.number}"
    raise EngineError(f"no kept generation has other files for customer {customer!r} than the live ones")


def _shape(gen: Generation, customer: str) -> dict[str, str]:
    return {p: f.sha256 for p, f in gen.customer_files(customer).items()}


def desired_files(state_dir: str, live: Generation, target: Generation, customer: str | None) -> dict[str, RenderedFile]:
    """The files to make live: all of ``target``'s, or ``live``'s with ``customer``'s taken from ``target``."""
    if customer is None:
        chosen = dict(target.files)
    else:
        chosen = {p: f for p, f in live.files.items() if f.customer != customer}
        chosen.update(target.customer_files(customer))
    out = {}
    for where, rec in chosen.items():
        text = blob(state_dir, rec.sha256)
        if text is None:
            raise EngineError(f"the stored content of {where} (generation {target.number}) is missing; cannot roll back")
        out[where] = RenderedFile(where, text, rec.kind, rec.customer, rec.app, rec.mode)  # type: ignore[arg-type]
    return out
