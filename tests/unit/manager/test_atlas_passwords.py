"""Atlas passwords: the seed's rules, argon2id hashes, rehash, temporary passwords."""
from __future__ import annotations

import pytest
from argon2 import PasswordHasher

from common.errors import InvalidAPIParameters
from manager.atlas import passwords
from manager.atlas.passwords import Passwords

FAST = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


@pytest.mark.parametrize("bad, lacking", [
    ("Sh0rt!x", "at least 10 characters"),
    ("alllower1!xx", "an upper-case letter"),
    ("ALLUPPER1!XX", "a lower-case letter"),
    ("NoDigitsHere!", "a digit"),
    ("NoSpecial123", "a special character"),
    ("Tab\there1!aB", "no control characters"),
    ("Aa1!" + "x" * 200, "at most 128 characters"),
])
def test_rules_say_what_is_missing(bad: str, lacking: str) -> None:
    with pytest.raises(InvalidAPIParameters) as e:
        passwords.check(bad)
    assert lacking in str(e.value)


def test_good_password_and_non_strings() -> None:
    assert passwords.check("Correct-horse-9") == "Correct-horse-9"
    with pytest.raises(InvalidAPIParameters):
        passwords.check(None)
    with pytest.raises(InvalidAPIParameters):
        passwords.check(1234567890)


def test_temporary_passwords_follow_the_rules_and_differ() -> None:
    made = {passwords.temporary() for _ in range(50)}
    assert len(made) == 50
    for p in made:
        assert passwords.problems(p) == []


async def test_hash_is_argon2id_and_verifies() -> None:
    pw = Passwords(FAST)
    stored = await pw.hash("Correct-horse-9")
    assert stored.startswith("$argon2id$") and "Correct-horse-9" not in stored
    assert await pw.verify(stored, "Correct-horse-9") == (True, None)
    assert await pw.verify(stored, "Correct-horse-8") == (False, None)
    assert await pw.verify("not a hash", "Correct-horse-9") == (False, None)


async def test_unknown_account_verifies_against_a_dummy_and_fails() -> None:
    pw = Passwords(FAST)
    assert await pw.verify(None, "Correct-horse-9") == (False, None)


async def test_rehash_when_parameters_change() -> None:
    old = await Passwords(FAST).hash("Correct-horse-9")
    stronger = Passwords(PasswordHasher(time_cost=2, memory_cost=2048, parallelism=1))
    ok, new = await stronger.verify(old, "Correct-horse-9")
    assert ok and new is not None and new != old and "m=2048" in new
    assert await stronger.verify(new, "Correct-horse-9") == (True, None)
