"""Password hashes: Argon2id (argon2-cffi, RFC 9106's parameters), in PHC string form.

Hashes made before Argon2id (scrypt at N=2^14, below OWASP's floor) still verify and are
replaced at the next successful sign-in (`needs_rehash`). Hashing is CPU-heavy: callers
run it on the CPU executor.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()  # Argon2id, t=3, m=64 MiB, p=4
_SCRYPT_PREFIX = "scrypt$"
_SCRYPT_MAXMEM = 64 * 1024 * 1024


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password: str, stored: str | None) -> bool:
    """Constant-time check. With no stored hash (unknown user) the same work is done, so
    an unknown email and a wrong password cannot be told apart by timing."""
    if stored is not None and stored.startswith(_SCRYPT_PREFIX):
        return _verify_scrypt(password, stored)
    try:
        return _hasher.verify(stored or _dummy_hash(), password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(stored: str) -> bool:
    """Whether a hash that just verified should be replaced: an older scheme, or weaker
    Argon2 parameters than today's."""
    return stored.startswith(_SCRYPT_PREFIX) or _hasher.check_needs_rehash(stored)


@functools.cache
def _dummy_hash() -> str:
    return _hasher.hash("crmgate: no such user")


def _verify_scrypt(password: str, stored: str) -> bool:
    try:
        _, n, r, p, salt, digest = stored.split("$")
        actual = hashlib.scrypt(
            password.encode("utf-8"),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            maxmem=_SCRYPT_MAXMEM,
            dklen=32,
        )
        return hmac.compare_digest(actual, base64.b64decode(digest))
    except ValueError:
        return False
