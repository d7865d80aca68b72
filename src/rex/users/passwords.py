"""Passwords, stored as argon2id hashes (argon2-cffi's defaults: RFC 9106's second
recommended profile), never in the clear; one-time passwords made by the CLI."""

from __future__ import annotations

import asyncio
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_HASHER = PasswordHasher()  # argon2id, 64 MiB, t=3, p=4
# Verified against when the account does not exist, so that a wrong email costs the same time
# as a wrong password (no account enumeration by timing).
_DUMMY_HASH = _HASHER.hash(secrets.token_urlsafe(16))

MIN_LENGTH = 12
MAX_LENGTH = 1024


class WeakPassword(ValueError):
    """A password refused when it is set (too short or too long)."""


def check_strength(password: str) -> None:
    if len(password) < MIN_LENGTH:
        raise WeakPassword(f"a password has at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise WeakPassword(f"a password has at most {MAX_LENGTH} characters")


def hash_password(password: str) -> str:
    """The argon2id hash (PHC string) of ``password``."""
    check_strength(password)
    return _HASHER.hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    """Whether ``password`` matches ``stored_hash``; ``None`` (no such account) is checked
    against a dummy hash, so it takes as long and is always False."""
    if len(password) > MAX_LENGTH:
        return False
    try:
        return _HASHER.verify(stored_hash or _DUMMY_HASH, password) and stored_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


async def verify_password_async(stored_hash: str | None, password: str) -> bool:
    """``verify_password`` on a worker thread: argon2 takes tens of milliseconds of CPU on
    purpose, which must not stall the event loop."""
    return await asyncio.to_thread(verify_password, stored_hash, password)


def needs_rehash(stored_hash: str) -> bool:
    return _HASHER.check_needs_rehash(stored_hash)


def one_time_password() -> str:
    """A random password for a new or reset account (about 120 bits), shown once."""
    return secrets.token_urlsafe(15)
