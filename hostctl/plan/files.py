"""The files a plan compares: what rendering wants (``RenderedFile``) and what is live (``LiveFile``, ``Actual``).

Plain values; ``hostctl.render`` produces the first, ``hostctl.engine.state`` reads the others.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from hostctl.plan.manifest import Manifest, sha256

Kind = Literal["vassal", "nginx", "socket"]  # socket: an on-demand companion (render/ondemand.py)


@dataclass(frozen=True)
class RenderedFile:
    path: str
    content: str
    kind: Kind
    customer: str
    app: str
    mode: int  # vassals hold env values (secrets): not world-readable


@dataclass(frozen=True)
class LiveFile:
    content: bytes | None  # None: absent
    mode: int | None = None
    not_a_file: bool = False  # something else (a directory, a socket) sits at the path
    digest: str | None = None  # sha256 alone, for a file read over SSH (its content is not fetched)

    @property
    def present(self) -> bool:
        return self.content is not None or self.digest is not None

    def sha256(self) -> str:
        assert self.present
        return self.digest if self.digest is not None else sha256(self.content)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Actual:
    manifest: Manifest
    files: dict[str, LiveFile] = field(default_factory=dict)
