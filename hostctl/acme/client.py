"""Obtain a certificate from an ACME CA with the HTTP-01 challenge through the webroot: the edge.

The protocol is certbot's ``acme`` library; this module only wires it to
hostctl's files: the account key in ``cert_dir/accounts/``, challenge tokens in
``webroot/.well-known/acme-challenge/`` (which every server block serves over
plain HTTP), and the new key and chain handed back to the caller. Which
certificates to order, and when, is decided in ``schedule.py``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from dataclasses import dataclass
from typing import Protocol

import josepy as jose
from acme import challenges, client, crypto_util, errors, messages
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from hostctl import __version__
from hostctl.engine import fsops
from hostctl.inventory.schema import TlsSettings
from hostctl.render import tls

USER_AGENT = f"hostctl/{__version__}"
ORDER_TIMEOUT = 90  # seconds for the CA to validate and issue one order


class AcmeError(Exception):
    """One order failed; the message says why, in a line (other orders go on)."""


class NotServed(AcmeError):
    """The challenge tokens are not served where the CA will look: no challenge was answered."""


class Challenges(Protocol):
    """Puts HTTP-01 tokens where the serving host's nginx answers them (deploy: on a server, over SSH)."""

    def put(self, tokens: dict[str, str], domains: tuple[str, ...]) -> str | None:
        """Write ``{token: key authorization}``; why nginx there does not serve them for ``domains``, or None."""

    def remove(self, tokens: list[str]) -> None: ...


@dataclass(frozen=True)
class Issued:
    fullchain_pem: bytes
    key_pem: bytes


def challenge_dir(settings: TlsSettings) -> str:
    return os.path.join(settings.webroot, tls.ACME_CHALLENGE.strip("/"))


class Account:
    """A registered ACME account at ``settings.acme.directory`` (created on first use, then reused)."""

    def __init__(self, settings: TlsSettings):
        self.settings = settings
        acme = settings.acme
        digest = hashlib.sha256(acme.directory.encode()).hexdigest()[:16]
        self.file = os.path.join(settings.cert_dir, "accounts", f"{digest}.json")
        verify: bool | str = acme.ca_bundle or True
        try:
            self.key = self._load_or_create_key()
            self.net = client.ClientNetwork(self.key, alg=jose.RS256, verify_ssl=verify, user_agent=USER_AGENT)  # type: ignore[arg-type]
            directory = client.ClientV2.get_directory(acme.directory, self.net)
            self.client = client.ClientV2(directory, self.net)
            self._register()
        except (errors.Error, messages.Error, OSError, ValueError) as exc:
            raise AcmeError(f"the ACME CA at {acme.directory} cannot be used: {_explain(exc)}") from exc
        except Exception as exc:  # requests' connection and TLS errors
            raise AcmeError(f"the ACME CA at {acme.directory} cannot be reached: {_explain(exc)}") from exc

    def _saved(self) -> dict:
        try:
            with open(self.file, encoding="utf-8") as fh:
                return json.load(fh)
        except FileNotFoundError:
            return {}

    def _load_or_create_key(self) -> jose.JWKRSA:
        saved = self._saved()
        if "key" in saved:
            return jose.JWKRSA.json_loads(json.dumps(saved["key"]))
        return jose.JWKRSA(key=rsa.generate_private_key(public_exponent=65537, key_size=2048))

    def _register(self) -> None:
        saved = self._saved()
        if saved.get("uri"):
            self.net.account = messages.RegistrationResource(uri=saved["uri"], body=messages.Registration())
            return
        email = self.settings.acme.email
        registration = messages.NewRegistration.from_data(email=email, terms_of_service_agreed=True)
        regr = self.client.new_account(registration)
        os.makedirs(os.path.dirname(self.file), mode=0o700, exist_ok=True)
        body = json.dumps({"directory": self.settings.acme.directory, "uri": regr.uri, "key": json.loads(self.key.json_dumps())})
        fsops.write_atomic(self.file, body.encode(), 0o600)

    def obtain(self, domains: tuple[str, ...], remote: Challenges | None = None) -> Issued:
        """A new key and a certificate for ``domains``, proven with HTTP-01 through the webroot
        (this machine's, or ``remote``'s: then every token is put and checked before any challenge is answered)."""
        key = ec.generate_private_key(ec.SECP256R1())
        key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        csr = crypto_util.make_csr(key_pem, list(domains))
        written: list[str] = []
        tokens: dict[str, str] = {}
        try:
            order = self.client.new_order(csr)
            answers = []
            for authz in order.authorizations:
                if authz.body.status == messages.STATUS_VALID:
                    continue  # the CA reuses an earlier proof
                challb = next((c for c in authz.body.challenges if isinstance(c.chall, challenges.HTTP01)), None)
                if challb is None:
                    raise AcmeError(f"the CA offers no http-01 challenge for {authz.body.identifier.value}")
                response, validation = challb.response_and_validation(self.key)
                if remote is None:
                    written.append(self._write_token(challb.chall.encode("token"), validation))
                    self.client.answer_challenge(challb, response)
                else:
                    tokens[challb.chall.encode("token")] = validation
                    answers.append((challb, response))
            if remote is not None and tokens:
                problem = remote.put(tokens, domains)
                if problem:
                    raise NotServed(problem)
                for challb, response in answers:
                    self.client.answer_challenge(challb, response)
            deadline = dt.datetime.now() + dt.timedelta(seconds=ORDER_TIMEOUT)
            done = self.client.poll_and_finalize(order, deadline)
        except AcmeError:
            raise
        except errors.ValidationError as exc:
            raise AcmeError(_validation_failures(exc)) from exc
        except errors.TimeoutError as exc:
            raise AcmeError(f"the CA did not finish within {ORDER_TIMEOUT} s") from exc
        except Exception as exc:  # messages.Error (e.g. rateLimited), requests' errors
            raise AcmeError(_explain(exc)) from exc
        finally:
            for path in written:
                fsops.remove(path)
            if remote is not None and tokens:
                remote.remove(list(tokens))
        return Issued(done.fullchain_pem.encode(), key_pem)

    def _write_token(self, token: str, validation: str) -> str:
        directory = challenge_dir(self.settings)
        os.makedirs(directory, mode=0o755, exist_ok=True)
        path = os.path.join(directory, token)
        fsops.write_atomic(path, validation.encode(), 0o644)  # nginx's workers read it
        return path


def _validation_failures(exc: errors.ValidationError) -> str:
    parts = []
    for authzr in exc.failed_authzrs:
        for chall in authzr.body.challenges:
            if chall.error is not None:
                parts.append(f"{authzr.body.identifier.value}: {chall.error.detail or chall.error.typ}")
    return "challenge failed: " + "; ".join(parts) if parts else "challenge failed"


def _explain(exc: BaseException) -> str:
    if isinstance(exc, messages.Error):
        return f"{exc.typ.rsplit(':', 1)[-1] if exc.typ else 'error'}: {exc.detail or exc.title or ''}".rstrip(": ")
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:300]
