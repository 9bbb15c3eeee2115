"""Account passwords: the seed's rules, argon2id hashes (argon2-cffi), temporary passwords.

Rules (seed 000 §2.1): at least 10 characters, an upper-case and a lower-case letter, a
digit and a special character (anything not a letter, digit or space); at most
``MAX_LENGTH`` characters and no control characters. Hashing and verifying run in a
worker thread, at most ``CONCURRENCY`` at once (each argon2 call takes tens of MiB and
milliseconds of CPU, so a flood of sign-ins queues instead of exhausting memory). An
unknown e-mail is verified against a dummy hash, so the answer takes as long as for a
known one.
"""
from __future__ import annotations

import asyncio
import secrets
import string
import unicodedata

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from common.errors import InvalidAPIParameters

MIN_LENGTH = 10
MAX_LENGTH = 128
CONCURRENCY = 2
_SPECIALS = "!#$%&*+-=?@^_~"


def problems(password: str) -> list[str]:
    """What ``password`` lacks under the rules (empty: acceptable)."""
    out = []
    if len(password) < MIN_LENGTH:
        out.append(f"at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        out.append(f"at most {MAX_LENGTH} characters")
    if not any(c.isupper() for c in password):
        out.append("an upper-case letter")
    if not any(c.islower() for c in password):
        out.append("a lower-case letter")
    if not any(c.isdigit() for c in password):
        out.append("a digit")
    if not any(not c.isalnum() and not c.isspace() for c in password):
        out.append("a special character")
    if any(unicodedata.category(c).startswith("C") for c in password):
        out.append("no control characters")
    return out


def check(password: object) -> str:
    """``password`` if it follows the rules; else InvalidAPIParameters saying what lacks."""
    if not isinstance(password, str):
        raise InvalidAPIParameters("password must be a string")
    lacking = problems(password)
    if lacking:
        raise InvalidAPIParameters("the password needs " + ", ".join(lacking))
    return password


def temporary() -> str:
    """A random password that follows the rules (16 characters)."""
    pools = [string.ascii_uppercase, string.ascii_lowercase, string.digits, _SPECIALS]
    alphabet = "".join(pools)
    chars = [secrets.choice(p) for p in pools]
    chars += [secrets.choice(alphabet) for _ in range(16 - len(chars))]
    secrets.SystemRandom().shuffle(chars)
    return "".join(chars)


class Passwords:
    """argon2id hashing with the library's current parameters."""

    def __init__(self, hasher: PasswordHasher | None = None,
                 concurrency: int = CONCURRENCY) -> None:
        self._hasher = hasher or PasswordHasher()
        self._slots = asyncio.Semaphore(concurrency)
        self._dummy: str | None = None

    async def hash(self, password: str) -> str:
        async with self._slots:
            return await asyncio.to_thread(self._hasher.hash, password)

    async def verify(self, stored: str | None, password: str) -> tuple[bool, str | None]:
        """(matches, a new hash to store when the parameters changed, else None).
        ``stored`` None (no such account, or no password) takes the same time and fails."""
        if self._dummy is None:
            self._dummy = await self.hash(secrets.token_urlsafe(16))
        async with self._slots:
            return await asyncio.to_thread(self._verify, stored, password)

    def _verify(self, stored: str | None, password: str) -> tuple[bool, str | None]:
        assert self._dummy is not None
        try:
            self._hasher.verify(stored or self._dummy, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False, None
        if stored is None:
            return False, None
        if self._hasher.check_needs_rehash(stored):
            return True, self._hasher.hash(password)
        return True, None
