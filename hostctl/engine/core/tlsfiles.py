"""TLS files on this server: certificates shipped by deploy, and ACME HTTP-01 challenge tokens.

The control machine holds the operator's certificate files and runs the ACME
client (its account key never leaves it); a server only receives what its
nginx needs. Both kinds of file are written by root, so every directory on the
way must be one no customer can replace: each component of the (resolved) path
is opened with ``O_NOFOLLOW`` and must belong to root (or this process's user)
and not be writable by others, unless it is a sticky root directory like /tmp.

- certificates: ``<cert_dir>/<customer>_<app>/{fullchain,privkey}.pem``,
  directories 0700, the key 0600, each written to a temporary name, fsynced and
  renamed inside its directory's descriptor, and only when its content changed;
  removed once no live server block names them (``prune``);
- challenges: ``<webroot>/.well-known/acme-challenge/<token>`` (0644: nginx's
  workers read them), put, probed through this server's nginx, removed.
"""

from __future__ import annotations

import http.client
import os
import re
import stat
from dataclasses import dataclass
from typing import Iterable, Mapping

from hostctl.engine.core import securefs
from hostctl.engine.core.fsops import TMP_MARK

CERT_FILE = "fullchain.pem"
KEY_FILE = "privkey.pem"
CHALLENGE_DIR = ".well-known/acme-challenge"
PEM_MAX = 1 << 20
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,200}")
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,200}")


@dataclass(frozen=True)
class ShippedCert:
    """One app's certificate chain and key, as the control machine checked them (PEM text)."""

    name: str  # <customer>_<app>: its directory under cert_dir
    customer: str
    certificate: str  # PEM, as latin-1 text (JSON carries it byte for byte)
    key: str


class Untrusted(Exception):
    """A directory on the way is not root's alone; nothing was written there."""


def _owned_safely(st: os.stat_result) -> bool:
    if st.st_uid not in (0, os.geteuid()):
        return False
    writable_by_others = st.st_mode & 0o022
    return not writable_by_others or bool(st.st_mode & stat.S_ISVTX and st.st_uid == 0)


def open_trusted(path: str, mode: int) -> int:
    """``path`` as a directory descriptor, made (``mode``) where missing; ``Untrusted`` when a customer could swap it."""
    real = os.path.realpath(path)
    fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    where = ""
    try:
        for name in [p for p in real.split("/") if p]:
            where += "/" + name
            try:
                os.mkdir(name, mode, dir_fd=fd)
            except FileExistsError:
                pass
            try:
                child = os.open(name, securefs.DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                raise Untrusted(f"{where} is not a directory root can use ({exc.strerror})") from None
            os.close(fd)
            fd = child
            st = os.fstat(fd)
            if not _owned_safely(st):
                raise Untrusted(f"{where} belongs to uid {st.st_uid} or is writable by others "
                                f"(mode {stat.S_IMODE(st.st_mode):o}); root writes no certificate or token below it")
        return fd
    except BaseException:
        os.close(fd)
        raise


def _same(dirfd: int, name: str, content: bytes, mode: int) -> bool:
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dirfd)
    except OSError:
        return False
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size != len(content) or stat.S_IMODE(st.st_mode) != mode or st.st_uid != os.geteuid():
            return False
        return os.read(fd, PEM_MAX + 1) == content
    finally:
        os.close(fd)


def write_at(dirfd: int, name: str, content: bytes, mode: int) -> bool:
    """Replace ``name`` in ``dirfd`` atomically with ``content`` (not when it already is); whether it was written."""
    if _same(dirfd, name, content, mode):
        return False
    tmp = f".{name}{TMP_MARK}{os.getpid()}"
    try:
        os.unlink(tmp, dir_fd=dirfd)
    except FileNotFoundError:
        pass
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=dirfd)
    try:
        view = memoryview(content)
        while view:
            view = view[os.write(fd, view):]
        os.fchmod(fd, mode)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, name, src_dir_fd=dirfd, dst_dir_fd=dirfd)
    return True


def install(cert_dir: str, certs: Iterable[ShippedCert]) -> tuple[list[str], dict[str, tuple[str, str]]]:
    """Write each certificate and key that differs from what is there.

    Returns the names written and, per customer whose certificate could not be
    written, (its path, why): that customer is held back, the others go on.
    """
    certs = list(certs)
    written: list[str] = []
    failed: dict[str, tuple[str, str]] = {}
    if not certs:
        return written, failed
    try:
        top = open_trusted(cert_dir, 0o700)
    except (Untrusted, OSError) as exc:
        why = str(exc) if isinstance(exc, Untrusted) else f"{cert_dir} cannot be used ({exc.strerror})"
        return written, {c.customer: (cert_dir, why) for c in certs}
    try:
        st = os.fstat(top)
        if stat.S_IMODE(st.st_mode) & 0o077:
            os.fchmod(top, 0o700)
        for cert in certs:
            where = f"{cert_dir}/{cert.name}"
            if not _NAME.fullmatch(cert.name):
                failed[cert.customer] = (where, "not a certificate name hostctl writes")
                continue
            try:
                sub = securefs.ensure_dir(top, cert.name, 0o700, os.geteuid(), -1).fd
            except Exception as exc:  # noqa: BLE001 - EngineError (a symlink or a file there) or OSError
                failed[cert.customer] = (where, str(getattr(exc, "message", "") or exc))
                continue
            try:
                changed = write_at(sub, KEY_FILE, cert.key.encode("latin-1"), 0o600)
                changed = write_at(sub, CERT_FILE, cert.certificate.encode("latin-1"), 0o644) or changed
                if changed:
                    os.fsync(sub)
                    written.append(cert.name)
            except OSError as exc:
                failed[cert.customer] = (where, f"writing it failed ({exc.strerror})")
            finally:
                os.close(sub)
    finally:
        os.close(top)
    return written, failed


def prune(cert_dir: str, keep: set[str]) -> list[str]:
    """Remove the certificate directories of ``cert_dir`` not in ``keep``; their names.

    Only a directory holding nothing but what ``install`` writes is removed, so a
    ``cert_dir`` shared with other tools loses nothing of theirs."""
    if not os.path.isdir(cert_dir):
        return []
    removed = []
    top = open_trusted(cert_dir, 0o700)
    try:
        for entry in sorted(os.listdir(top)):
            if entry in keep or not _NAME.fullmatch(entry):
                continue
            try:
                sub = os.open(entry, securefs.DIR_FLAGS, dir_fd=top)
            except OSError:
                continue  # not a directory (or a symlink): not ours
            try:
                ours = all(n in (CERT_FILE, KEY_FILE) or TMP_MARK in n for n in os.listdir(sub))
            finally:
                os.close(sub)
            if ours:
                securefs.rmtree_at(top, entry)
                removed.append(entry)
    finally:
        os.close(top)
    return removed


# --- ACME HTTP-01 challenges ---------------------------------------------------------


def challenges(webroot: str, put: Mapping[str, str], remove: Iterable[str]) -> None:
    """Write the tokens of ``put`` (token -> key authorization) and delete those of ``remove``."""
    top = open_trusted(webroot, 0o755)
    try:
        fd = top
        for name in CHALLENGE_DIR.split("/"):
            child = securefs.ensure_dir(fd, name, 0o755, os.geteuid(), -1).fd
            if fd != top:
                os.close(fd)
            fd = child
        try:
            for token in remove:
                if _TOKEN.fullmatch(token):
                    try:
                        os.unlink(token, dir_fd=fd)
                    except FileNotFoundError:
                        pass
            for token, validation in put.items():
                if not _TOKEN.fullmatch(token) or not _TOKEN.fullmatch(validation.replace(".", "")):
                    raise ValueError(f"not an ACME token: {token!r}")
                write_at(fd, token, validation.encode(), 0o644)
        finally:
            if fd != top:
                os.close(fd)
    finally:
        os.close(top)


def probe_address(listen: str) -> tuple[str, int]:
    """Where to reach nginx's plain-HTTP listener from this server."""
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    if host in ("", "0.0.0.0", "*"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    return host, int(port)


def served(listen: str, domains: Iterable[str], token: str, expected: str, timeout: float = 5.0) -> str | None:
    """Why this server's nginx does not answer ``token`` for one of ``domains``, or None when it does for all."""
    host, port = probe_address(listen)
    path = f"/{CHALLENGE_DIR}/{token}"
    for domain in domains:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
        try:
            conn.request("GET", path, headers={"Host": domain})
            response = conn.getresponse()
            body = response.read(4096)
        except http.client.RemoteDisconnected:
            return f"nginx there does not serve /{CHALLENGE_DIR}/ for {domain} (no server block has this name)"
        except OSError as exc:
            return f"nginx there does not answer on {listen} ({exc})"
        finally:
            conn.close()
        if response.status != 200 or body != expected.encode():
            return f"nginx there does not serve /{CHALLENGE_DIR}/ for {domain} (HTTP {response.status})"
    return None
