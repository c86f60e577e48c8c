"""Read certificate files: the edge that tells rendering which certificates exist.

``read()`` parses a PEM certificate and its key with ``cryptography``.
``ready()`` maps every certificate that is usable now (it parses, its key
matches, it is within its validity period) to the names it covers; rendering
takes that map, so only usable certificates ever reach nginx. ``check()`` turns
an operator-provided certificate that is missing, expired, not matching its key
or not covering the app's domains into validation problems.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass

from typing import TYPE_CHECKING, Callable

from hostctl.engine import boundedio
from hostctl.errors import Problem
from hostctl.inventory.spec import Inventory
from hostctl.render import tls

if TYPE_CHECKING:  # cryptography is imported where a certificate is parsed: apply without TLS need not load it
    from cryptography import x509


@dataclass(frozen=True)
class CertFacts:
    """What one certificate file (and its key) says."""

    certificate: str
    names: frozenset[str] = frozenset()
    issuer: str = ""
    not_before: dt.datetime | None = None
    not_after: dt.datetime | None = None
    serial: int = 0
    key_matches: bool = False
    error: str | None = None  # the files exist but cannot be used as they are

    def days_left(self, now: dt.datetime) -> int | None:
        return None if self.not_after is None else (self.not_after - now).days

    def unusable(self, now: dt.datetime) -> str | None:
        """Why nginx must not be given this certificate now, or None."""
        if self.error:
            return self.error
        if not self.key_matches:
            return "its key does not match the certificate"
        assert self.not_before is not None and self.not_after is not None
        if now >= self.not_after:
            return f"it expired on {self.not_after:%Y-%m-%d %H:%M} UTC"
        if now < self.not_before:
            return f"it is not valid before {self.not_before:%Y-%m-%d %H:%M} UTC"
        return None


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _name(name: x509.Name) -> str:
    from cryptography.x509.oid import NameOID

    for oid in (NameOID.COMMON_NAME, NameOID.ORGANIZATION_NAME):
        attrs = name.get_attributes_for_oid(oid)
        if attrs:
            return str(attrs[0].value)
    return name.rfc4514_string()


def parse(cert_pem: bytes, key_pem: bytes | None, path: str = "") -> CertFacts:
    """Facts about a PEM certificate (the first one in the file) and its key."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509.oid import NameOID

    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as exc:
        return CertFacts(path, error=f"{path!r} is not a PEM certificate ({exc})")
    try:
        names = frozenset(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        names = frozenset(str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME))
    matches = False
    error = None
    if key_pem is not None:
        try:
            key = serialization.load_pem_private_key(key_pem, password=None)
        except (ValueError, TypeError) as exc:
            error = f"the key is not an unencrypted PEM private key ({exc})"
        else:
            spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            matches = key.public_key().public_bytes(*spki) == cert.public_key().public_bytes(*spki)
    return CertFacts(path, frozenset(n.lower() for n in names), _name(cert.issuer), cert.not_valid_before_utc,
                     cert.not_valid_after_utc, cert.serial_number, matches, error)


PEM_MAX = 1 << 20  # a chain of a dozen certificates is ~20 KB


def read_local(path: str) -> bytes:
    return boundedio.read_regular(path, PEM_MAX)


def read(certificate: str, key: str, load: Callable[[str], bytes] = read_local) -> CertFacts | None:
    """Facts about ``certificate`` and ``key``; None when the certificate does not exist.

    Either file may sit where a customer can write: only a regular file of at most ``PEM_MAX``
    bytes is read (a FIFO or /dev/zero is refused without blocking), see ``boundedio``.
    Symlinks are followed: Let's Encrypt's live/ directory is made of them. ``load``: how a
    file is read (``FileNotFoundError`` or ``OSError`` when it cannot be); `certs --host`
    gives the files read on that server.
    """
    try:
        cert_pem = load(certificate)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return CertFacts(certificate, error=f"{certificate!r} cannot be read ({exc.strerror})")
    try:
        key_pem: bytes | None = load(key)
    except OSError as exc:
        return dataclasses.replace(parse(cert_pem, None, certificate), error=f"the key {key!r} cannot be read ({exc.strerror})")
    return parse(cert_pem, key_pem, certificate)


def read_all(inventory: Inventory) -> dict[str, CertFacts | None]:
    """Certificate name (<customer>_<app>) -> its facts, None when it does not exist yet."""
    return {spec.name: read(spec.certificate, spec.key) for spec in tls.wanted(inventory)}


def ready(inventory: Inventory, now: dt.datetime | None = None) -> dict[str, frozenset[str]]:
    """Every wanted certificate that is usable now: its path -> the names it covers."""
    now = now or now_utc()
    out = {}
    for spec in tls.wanted(inventory):
        facts = read(spec.certificate, spec.key)
        if facts is not None and facts.unusable(now) is None:
            out[spec.certificate] = facts.names
    return out


def check(inventory: Inventory, now: dt.datetime | None = None) -> list[Problem]:
    """Validation problems of operator-provided certificates (ACME ones are hostctl's to fix)."""
    now = now or now_utc()
    problems = []
    for spec in tls.wanted(inventory):
        if spec.source != "provided":
            continue
        customer = inventory.customer(spec.customer)
        assert customer is not None
        path = ("apps", spec.app, "tls", "certificate")
        facts = read(spec.certificate, spec.key)
        if facts is None:
            problems.append(inventory.problem(customer.file, path, f"customer {spec.customer!r}: {spec.certificate!r} does not exist"))
            continue
        why = facts.unusable(now)
        if why:
            key_fault = facts.error is None and not facts.key_matches or (facts.error or "").startswith("the key")
            where = path[:-1] + ("key",) if key_fault else path
            problems.append(inventory.problem(customer.file, where, f"customer {spec.customer!r}: {spec.certificate!r} cannot be used: {why}"))
            continue
        uncovered = [d for d in spec.domains if not tls.covers(facts.names, d)]
        if uncovered:
            problems.append(inventory.problem(customer.file, path, f"customer {spec.customer!r}: {spec.certificate!r} does not cover "
                                              f"{', '.join(map(repr, uncovered))} (it covers {', '.join(sorted(facts.names)) or 'no names'})"))
    return problems
