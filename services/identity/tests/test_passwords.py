import asyncio

import pytest
from argon2 import PasswordHasher, extract_parameters
from argon2.exceptions import InvalidHashError

from identity.passwords import (
    COMMON_PASSWORDS,
    DUMMY_HASH,
    MAX_LENGTH,
    MIN_LENGTH,
    check_password_policy,
    hash_password,
    verify_password,
)

GOOD = "paarse olifant op de fiets"


async def test_hash_is_argon2id_with_the_owasp_parameters() -> None:
    password_hash = await hash_password(GOOD)

    assert password_hash.startswith("$argon2id$v=19$m=19456,t=2,p=1$")


async def test_same_password_hashes_differently_each_time() -> None:
    assert await hash_password(GOOD) != await hash_password(GOOD)


async def test_right_password_verifies() -> None:
    assert await verify_password(await hash_password(GOOD), GOOD) == (True, None)


async def test_wrong_password_does_not_verify() -> None:
    assert await verify_password(await hash_password(GOOD), GOOD + "!") == (False, None)


async def test_hash_with_old_parameters_is_replaced_at_login() -> None:
    old_hash = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(GOOD)

    ok, new_hash = await verify_password(old_hash, GOOD)

    assert ok
    assert new_hash is not None
    assert new_hash.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert await verify_password(new_hash, GOOD) == (True, None)


async def test_wrong_password_against_an_old_hash_yields_no_new_hash() -> None:
    old_hash = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(GOOD)

    assert await verify_password(old_hash, "something else entirely") == (False, None)


async def test_password_typed_in_another_unicode_form_still_verifies() -> None:
    composed, decomposed = "café au lait 42", "cafe\u0301 au lait 42"

    assert await verify_password(await hash_password(composed), decomposed) == (True, None)


async def test_dummy_hash_costs_the_same_as_a_real_one_and_matches_nothing() -> None:
    real_hash = await hash_password(GOOD)

    assert extract_parameters(DUMMY_HASH) == extract_parameters(real_hash)
    assert await verify_password(DUMMY_HASH, GOOD) == (False, None)
    assert await verify_password(DUMMY_HASH, "") == (False, None)


async def test_corrupt_stored_hash_is_an_error_not_a_wrong_password() -> None:
    with pytest.raises(InvalidHashError):
        await verify_password("not-a-hash", GOOD)


async def test_hashing_leaves_the_event_loop_free() -> None:
    ticks = 0
    hashing = asyncio.ensure_future(hash_password(GOOD))
    while not hashing.done():
        ticks += 1
        await asyncio.sleep(0)

    await hashing
    assert ticks > 1


@pytest.mark.parametrize(
    "password",
    [
        "x" * MIN_LENGTH,
        "x" * MAX_LENGTH,
        "🙂" * MIN_LENGTH,
        "correct horse battery staple",
        "wachtwoord-van-juf-anna",
    ],
)
def test_acceptable_passwords_pass(password: str) -> None:
    assert check_password_policy(password, "anna@school.example") is None


@pytest.mark.parametrize("password", ["x" * (MIN_LENGTH - 1), "🙂" * (MIN_LENGTH - 1), ""])
def test_short_password_is_refused(password: str) -> None:
    assert check_password_policy(password) == f"Use at least {MIN_LENGTH} characters."


def test_overly_long_password_is_refused() -> None:
    assert check_password_policy("x" * (MAX_LENGTH + 1)) == f"Use at most {MAX_LENGTH} characters."


@pytest.mark.parametrize("password", ["1234567890", "Password123", "WACHTWOORD", "Qwertyuiop", "klaspost123"])
def test_common_breached_password_is_refused(password: str) -> None:
    assert check_password_policy(password) == "This password is too common; choose another."


@pytest.mark.parametrize("email", ["juf.anna@school.example", " Juf.Anna@School.example "])
def test_password_equal_to_the_email_is_refused(email: str) -> None:
    assert (
        check_password_policy("juf.anna@school.example", email)
        == "Your password must not be your email address."
    )


def test_common_password_list_is_shipped_and_only_holds_passwords_the_length_rule_lets_through() -> None:
    assert len(COMMON_PASSWORDS) >= 200
    assert all(MIN_LENGTH <= len(password) <= MAX_LENGTH for password in COMMON_PASSWORDS)
    assert all(password == password.lower() for password in COMMON_PASSWORDS)
