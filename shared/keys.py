"""Signing keys and the published public keys every service checks tokens with.

Only the identity service holds private keys (Ed25519, PEM files); it signs with the first
of ``DOORSTEP_SIGNING_KEYS`` and publishes the public half of every one of them as a JWKS
(RFC 7517) at ``/.well-known/jwks.json``, each under its ``kid`` (the RFC 7638 thumbprint).
A service never holds a secret that could mint a token: it fetches the JWKS and checks
signatures with it (``KeyRing``). Rotation without downtime: publish the new key first
(add it after the current one), let every service learn it, make it the signing key (move
it first), and drop the old one once the tokens it signed have expired.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import stat
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from shared.log import get_logger

log = get_logger(__name__)

ALGORITHM = "EdDSA"
UNKNOWN_KID_PAUSE = 5.0  # at most one fetch this often for tokens with a kid not known yet


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def public_jwk(public: Ed25519PublicKey) -> dict[str, str]:
    x = _b64(public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))
    # RFC 7638: the thumbprint of the required members, in lexicographic order, no spaces.
    canonical = json.dumps({"crv": "Ed25519", "kty": "OKP", "x": x}, separators=(",", ":"))
    kid = _b64(hashlib.sha256(canonical.encode()).digest())
    return {"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "alg": ALGORITHM, "use": "sig"}


class KeyRefused(ValueError):
    """A key file that must not be used: not Ed25519, unreadable, or readable by others."""


@dataclass(frozen=True)
class SigningKey:
    private: Ed25519PrivateKey

    @classmethod
    def generate(cls) -> SigningKey:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_pem(cls, pem: bytes) -> SigningKey:
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError) as exc:
            raise KeyRefused(f"not a PEM private key without a password: {exc}") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyRefused(f"an Ed25519 key is required, not {type(key).__name__}")
        return cls(key)

    @classmethod
    def load(cls, path: Path, *, private_file: bool = True) -> SigningKey:
        """A key from its PEM file. ``private_file``: refuse a file others may read (outside
        development a key anyone on the machine can read is not the issuer's alone)."""
        try:
            mode = path.stat().st_mode
            pem = path.read_bytes()
        except OSError as exc:
            raise KeyRefused(f"{path}: {exc.strerror}") from exc
        if private_file and mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KeyRefused(f"{path}: readable by others (chmod 600)")
        return cls.from_pem(pem)

    def pem(self) -> bytes:
        return self.private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(self.pem())

    @property
    def jwk(self) -> dict[str, str]:
        return public_jwk(self.private.public_key())

    @property
    def kid(self) -> str:
        return self.jwk["kid"]

    def sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self.private, algorithm=ALGORITHM, headers={"kid": self.kid})


def jwks(keys: Iterable[SigningKey]) -> dict[str, list[dict[str, str]]]:
    return {"keys": [k.jwk for k in keys]}


class KeyRing:
    """The public keys tokens are checked with, by ``kid``: read from the issuer's JWKS
    (``url``) now and then, and at once when a token names a kid not known yet (a key
    published since), at most once per ``UNKNOWN_KID_PAUSE``."""

    def __init__(
        self,
        url: str | None = None,
        keys: Iterable[dict[str, Any]] = (),
        refresh_every: float = 300.0,
    ) -> None:
        self.url = url
        # Read again this often: a retired key is dropped by then (a new one is learnt at
        # once, when a token names it).
        self.refresh_every = refresh_every
        self._keys: dict[str, Any] = {}
        self._fetched_at = 0.0
        self._fetching: asyncio.Lock | None = None
        self._take(list(keys))

    @classmethod
    def of(cls, *keys: SigningKey) -> KeyRing:
        """Keys known in-process (the issuer itself; tests)."""
        return cls(None, [k.jwk for k in keys])

    def _take(self, found: list[dict[str, Any]]) -> None:
        keys = {}
        for jwk in found:
            if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519" or "kid" not in jwk:
                continue  # only what we sign with: nothing else can make a token here valid
            keys[jwk["kid"]] = jwt.PyJWK.from_dict(jwk, algorithm=ALGORITHM).key
        self._keys = keys

    @property
    def loaded(self) -> bool:
        return bool(self._keys)

    def key(self, kid: str) -> Any | None:
        return self._keys.get(kid)

    async def fetch(self) -> None:
        if self.url is None:
            return
        async with httpx.AsyncClient(timeout=3.0) as client:
            response = await client.get(self.url)
            response.raise_for_status()
            found = response.json().get("keys", [])
        if not isinstance(found, list):
            raise ValueError("the JWKS has no list of keys")
        self._take(found)
        self._fetched_at = time.monotonic()

    async def learn(self, kid: str) -> Any | None:
        """The key ``kid``, fetching the JWKS again if it may be new."""
        if kid in self._keys or self.url is None:
            return self._keys.get(kid)
        self._fetching = self._fetching or asyncio.Lock()
        async with self._fetching:
            if kid not in self._keys and time.monotonic() - self._fetched_at > UNKNOWN_KID_PAUSE:
                try:
                    await self.fetch()
                except Exception as exc:  # the issuer away: the keys known still work
                    log.warning("keys.fetch_failed", url=self.url, error=repr(exc))
                    self._fetched_at = time.monotonic()
        return self._keys.get(kid)

    async def keep_fresh(self) -> None:
        """Background loop: fetch until it works, then every ``refresh_every`` seconds."""
        delay = 0.5
        while True:
            try:
                await self.fetch()
                delay = self.refresh_every
            except Exception as exc:
                log.warning("keys.fetch_failed", url=self.url, error=repr(exc))
                delay = min(delay * 2, 10.0, self.refresh_every)
            await asyncio.sleep(delay)

    async def check(self) -> None:
        """Readiness: a service that knows no key cannot accept anyone."""
        if not self.loaded:
            raise RuntimeError(f"no signing keys known yet (from {self.url})")
