"""The manifest: which live files hostctl wrote, and what it wrote into them.

It is how hostctl knows its own files (never touching anyone else's), spots
hand edits (drift) and removes files of customers that left. Stored as JSON in
``state_dir``. Before an apply writes anything it records its intent (new and
previous hashes), so a crash at any point leaves a manifest that covers every
file the interrupted apply might have created.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

VERSION = 1


def sha256(data: bytes | str) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


@dataclass(frozen=True)
class Entry:
    sha256: str
    kind: str
    customer: str
    app: str
    previous: str | None = None  # set while an apply that changes this file is in flight

    def accepts(self, digest: str) -> bool:
        """True when ``digest`` is content hostctl itself wrote (no hand edit)."""
        return digest == self.sha256 or (self.previous is not None and digest == self.previous)


@dataclass(frozen=True)
class Manifest:
    files: dict[str, Entry] = field(default_factory=dict)

    def to_json(self) -> str:
        # One line per file, each encoded by json's C encoder (indent= would use the slow Python one).
        lines = [f" {json.dumps(path)}: {json.dumps({k: v for k, v in vars(e).items() if v is not None}, sort_keys=True)}"
                 for path, e in sorted(self.files.items())]
        body = "{\n" + ",\n".join(lines) + "\n}" if lines else "{}"
        return f'{{"version": {VERSION}, "files": {body}}}\n'

    @classmethod
    def from_json(cls, text: str) -> "Manifest":
        data = json.loads(text)
        if data.get("version") != VERSION:
            raise ValueError(f"unsupported manifest version {data.get('version')!r}")
        return cls({path: Entry(**entry) for path, entry in data["files"].items()})
