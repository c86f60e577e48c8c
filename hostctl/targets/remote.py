"""What a deploy reads from a host and what it sends there: pure, no SSH here.

Two round trips at most per host. ``head_command`` answers the digest of the
host's state (``engine/listing.py``) and its facts (uid, cgroup mounts: what
rendering for that host depends on); ``read_command`` asks for the state in
full: the manifest plus the mode and sha256 of every vassal and server block
there, and the sha256 of each runtime record. ``parse_state`` turns it into the
``Actual`` that ``plan.make_plan`` compares hashes against. ``job`` is what the
engine, shipped to the host (``shipping.py``), is told to do there.
"""

from __future__ import annotations

import io
import os
import shlex
import tarfile
from dataclasses import dataclass, field
from typing import Iterable, Mapping

import jinja2

from hostctl.render import cgroups
from hostctl.engine.core import listing as engine_listing
from hostctl.engine.core.listing import FACTS_MARK, MODES_MARK, RUNTIME_MARK, SHA_MARK  # noqa: F401
from hostctl.engine.core.manifest import Entry, Manifest, sha256
from hostctl.engine.core.plan import Actual, LiveFile, Plan, RenderedFile
from hostctl.errors import HostctlError
from hostctl.inventory.schema import Settings

LOCK_WAIT = 120  # seconds a deploy waits for the host's lock (another apply or deploy)


def script_environment(env: jinja2.Environment) -> jinja2.Environment:
    """The inventory's template environment plus ``sh`` (shell quoting) for scripts run on hosts."""
    env = env.overlay()
    env.filters["sh"] = shlex.quote
    env.filters["basename"] = os.path.basename
    return env


# --- reading a host ---------------------------------------------------------------


def where_of(settings: Settings) -> engine_listing.Where:
    return engine_listing.Where(settings.emperor_dir, settings.nginx_dir, settings.state_dir,
                                settings.cgroup.v1_root, settings.cgroup.v2_root)


def read_command(settings: Settings) -> str:
    """One shell command printing the manifest, then mode and sha256 of every vassal (and companion) and
    server block, then the sha256 of every runtime record (``engine/listing.py``)."""
    return engine_listing.shell_command(where_of(settings), facts=False)


def facts_command(settings: Settings) -> str:
    """The facts section alone (``FACTS_MARK`` first)."""
    full = engine_listing.shell_command(where_of(settings), facts=True)
    return full[len(read_command(settings)) + 2:]


def state_command(settings: Settings) -> str:
    """``read_command``, then the facts."""
    return engine_listing.shell_command(where_of(settings), facts=True)


def digest_command(settings: Settings) -> str:
    """``read_command``'s answer reduced to its sha256 (64 bytes tell whether a host is exactly as expected), then the facts."""
    return f"{{ {read_command(settings)}; }} | sha256sum; {facts_command(settings)}"


def parse_head(output: str) -> tuple[str, str]:
    """The answer to ``digest_command``: (digest, facts text)."""
    _, _, facts = output.partition(f"{FACTS_MARK}\n")
    return output[:64], facts


def answered(digest: str, facts: str) -> str:
    """What a host answered, as one key (state digest and facts)."""
    return f"{digest}-{sha256(facts)[:16]}"


def listing(actual: Actual, runtime: Mapping[str, str] | None = None) -> str:
    """The text ``read_command`` prints for a host in state ``actual`` (``runtime``: record path -> sha256)."""
    manifest = actual.manifest.to_json() if actual.manifest.files else ""
    modes = "".join(sorted(f"{f.mode:o} {p}\n" for p, f in actual.files.items()))  # as LC_ALL=C sort orders them
    sums = "".join(sorted(f"{f.sha256()}  {p}\n" for p, f in actual.files.items()))
    records = "".join(sorted(f"{d}  {p}\n" for p, d in (runtime or {}).items()))
    return f"{manifest}\n{MODES_MARK}\n{modes}{SHA_MARK}\n{sums}{RUNTIME_MARK}\n{records}"


def expected(desired: Mapping[str, RenderedFile]) -> Actual:
    """A host's state right after a deploy of ``desired``: its files, and the manifest listing them."""
    manifest = Manifest({p: Entry(sha256(f.content), f.kind, f.customer, f.app) for p, f in desired.items()})
    files = {p: LiveFile(None, f.mode, digest=manifest.files[p].sha256) for p, f in desired.items()}
    return Actual(manifest, files)


def expected_digest(desired: Mapping[str, RenderedFile], runtime: Mapping[str, str] | None = None) -> str:
    """What ``digest_command`` answers on a host that already has exactly ``desired`` (and nothing else of ours)."""
    return sha256(listing(expected(desired), runtime))


def parse_runtime(output: str) -> dict[str, str]:
    """The runtime records' hashes in an answer to ``read_command``: path -> sha256."""
    _, sep, rest = output.partition(f"{RUNTIME_MARK}\n")
    out = {}
    for line in rest.partition(f"{FACTS_MARK}\n")[0].splitlines() if sep else ():
        digest, sep2, path = line.partition("  ")
        if sep2 and len(digest) == 64:
            out[path] = digest
    return out


def parse_facts(text: str, cfg) -> cgroups.Facts:
    """The facts section as ``cgroups.Facts`` (``cfg``: the inventory's cgroup settings)."""
    lines = text.splitlines()
    uid = next((line.split()[1] for line in lines if line.startswith("uid ")), "")
    mounts = "\n".join(line for line in lines if line.startswith("cgroup"))
    dirs = {line.split(" ", 2)[1]: line.split(" ", 2)[2] for line in lines if line.startswith("dir ") and line.count(" ") >= 2}
    controllers = {}
    for line in lines:
        if line.startswith("controllers "):
            _, mount, *names = line.split()
            controllers[mount] = frozenset(names)
    v1, v2_root = cgroups.locate(cfg, mounts)
    if cfg.v1_root:
        v1 = {c: d for c, d in v1.items() if c in dirs}
    v2 = v2_root if v2_root in controllers else None
    return cgroups.Facts(uid == "0", v1, v2, controllers.get(v2, frozenset()))


def parse_state(output: str, where: str) -> Actual:
    """The answer to ``read_command`` as an ``Actual`` of hashes (``where`` names the host in errors)."""
    try:
        manifest_text, rest = output.split(f"\n{MODES_MARK}\n", 1)
        modes_text, sha_text = rest.split(f"{SHA_MARK}\n", 1)
        sha_text = sha_text.partition(f"{RUNTIME_MARK}\n")[0].partition(f"{FACTS_MARK}\n")[0]
    except ValueError:
        raise HostctlError(f"{where}: unexpected answer while reading the state: {output[:300]!r}") from None
    try:
        manifest = Manifest.from_json(manifest_text) if manifest_text.strip() else Manifest()
    except (ValueError, KeyError, TypeError) as exc:
        raise HostctlError(f"{where}: the manifest is damaged ({exc}; it begins {manifest_text[:80]!r}); "
                           "move it aside to let hostctl rebuild it") from exc
    modes: dict[str, int] = {}
    for line in modes_text.splitlines():
        mode, _, path = line.partition(" ")
        if path and mode.isdigit():
            modes[path] = int(mode, 8)
    files: dict[str, LiveFile] = {}
    for line in sha_text.splitlines():
        digest, sep, path = line.partition("  ")
        if sep and len(digest) == 64 and not digest.startswith("\\"):
            files[path] = LiveFile(None, modes.get(path), digest=digest)
    return Actual(manifest, files)


def add_member(tar: tarfile.TarFile, path: str, data: bytes, mode: int, group: str = "root") -> None:
    info = tarfile.TarInfo(path.lstrip("/"))
    info.size, info.mode, info.mtime = len(data), mode, 0
    info.uid = info.gid = 0
    info.uname, info.gname = "root", group
    tar.addfile(info, io.BytesIO(data))


def hold_back(plan: Plan, old: Manifest, customers: Iterable[str]) -> Plan:
    """``plan`` without removing ``customers``' files (they keep their manifest entries).

    A customer moving to another host stays where it is until the new host serves it.
    """
    keep = set(customers)
    held = [c for c in plan.changes if c.action == "delete" and c.customer in keep]
    if not held:
        return plan
    changes = tuple(c for c in plan.changes if c not in held)
    entries = dict(plan.manifest.files)
    for change in held:
        entries[change.path] = old.files[change.path]
    return Plan(changes, plan.conflicts, Manifest(entries), plan.unchanged + len(held))
