"""Password hashes: scrypt with a random salt, in one self-describing string."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

# 2**14 rounds, r=8, p=1: OWASP's floor for scrypt; about 50 ms here.
N, R, P = 2**14, 8, 1
_MAXMEM = 64 * 1024 * 1024


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=_MAXMEM, dklen=32
    )


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, N, R, P)
    encode = base64.b64encode
    return f"scrypt${N}${R}${P}${encode(salt).decode()}${encode(digest).decode()}"


def verify_password(password: str, stored: str | None) -> bool:
    """Constant-time check. With no stored hash (unknown user) the same work is done, so
    an unknown email and a wrong password cannot be told apart by timing."""
    if stored is None:
        _scrypt(password, b"\0" * 16, N, R, P)
        return False
    try:
        _, n, r, p, salt, digest = stored.split("$")
        expected = base64.b64decode(digest)
        actual = _scrypt(password, base64.b64decode(salt), int(n), int(r), int(p))
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)
