"""Development credentials: the issuer's key and identity's secret for `make run`, the
seed and `make token`, made once per machine in the cache (never in the clone). A
deployment names its own (DOORSTEP_SIGNING_KEYS, DOORSTEP_IDENTITY_SECRET)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from shared.keys import SigningKey


def _dir() -> Path:
    cache = os.environ.get("DOORSTEP_CACHE") or Path.home() / ".cache" / "doorstep"
    return Path(cache) / "dev"


def key_path() -> Path:
    path = _dir() / "issuer.pem"
    if not path.exists():
        SigningKey.generate().save(path)
    return path


def signing_key() -> SigningKey:
    """The key tokens are minted with here: the first of DOORSTEP_SIGNING_KEYS when set
    (the issuer's own), else the development key."""
    named = os.environ.get("DOORSTEP_SIGNING_KEYS", "").split(",")[0].strip()
    return SigningKey.load(Path(named) if named else key_path(), private_file=False)


def identity_secret() -> str:
    path = _dir() / "identity-secret"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(32))
    return path.read_text().strip()
