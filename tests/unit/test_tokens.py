"""Identity tokens: JWT HS256 through PyJWT, with the clock passed in."""

from __future__ import annotations

import jwt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.errors import Invalid, Unauthenticated
from app.tokens import Identity, issue_token, verify_token

# PyJWT warns about HMAC keys shorter than the hash (32 bytes for HS256, 64 for HS512).
SECRET = "correct horse battery staple " * 3
NOW = 1_800_000_000.0


def test_round_trip() -> None:
    token = issue_token(SECRET, "alice", name="Alice Liddell", ttl=60, now=NOW)
    assert verify_token(SECRET, token, now=NOW + 30) == Identity("alice", "Alice Liddell")


def test_name_defaults_to_the_user() -> None:
    token = issue_token(SECRET, "bob", name=None, ttl=60, now=NOW)
    assert verify_token(SECRET, token, now=NOW) == Identity("bob", "bob")


def test_claims_are_sub_exp_iat() -> None:
    token = issue_token(SECRET, "alice", name=None, ttl=60, now=NOW)
    assert jwt.get_unverified_header(token)["alg"] == "HS256"
    claims = jwt.decode(
        token,
        SECRET.encode(),
        algorithms=["HS256"],
        options={"verify_exp": False, "verify_iat": False},
    )
    assert claims == {"sub": "alice", "exp": int(NOW) + 60, "iat": int(NOW)}


def test_expiry_with_a_few_seconds_of_leeway() -> None:
    token = issue_token(SECRET, "alice", name=None, ttl=60, now=NOW)
    assert verify_token(SECRET, token, now=NOW + 64).user == "alice"
    with pytest.raises(Unauthenticated, match="expired"):
        verify_token(SECRET, token, now=NOW + 66)


def test_the_clock_is_the_one_passed_in() -> None:
    # Issued "in the future" as far as the machine's clock goes: only `now` counts.
    future = 4_000_000_000.0
    token = issue_token(SECRET, "alice", name=None, ttl=60, now=future)
    assert verify_token(SECRET, token, now=future).user == "alice"
    with pytest.raises(Unauthenticated, match="not valid yet"):
        verify_token(SECRET, token, now=future - 60)


@pytest.mark.parametrize("claim", ["iat", "nbf"])
def test_tokens_from_the_future_are_rejected(claim: str) -> None:
    claims = {"sub": "alice", "exp": int(NOW) + 600, claim: int(NOW) + 60}
    token = jwt.encode(claims, SECRET.encode(), algorithm="HS256")
    with pytest.raises(Unauthenticated, match=claim):
        verify_token(SECRET, token, now=NOW)
    assert verify_token(SECRET, token, now=NOW + 60).user == "alice"


def test_wrong_key_is_rejected() -> None:
    token = issue_token(SECRET, "alice", name=None, ttl=60, now=NOW)
    with pytest.raises(Unauthenticated):
        verify_token("another secret of the same length!!!", token, now=NOW)


def test_tampered_payload_is_rejected() -> None:
    header, _payload, signature = issue_token(SECRET, "alice", name=None, ttl=60, now=NOW).split(
        "."
    )
    forged = jwt.encode({"sub": "mallory", "exp": int(NOW) + 60}, "y" * 32).split(".")[1]
    with pytest.raises(Unauthenticated):
        verify_token(SECRET, f"{header}.{forged}.{signature}", now=NOW)


@pytest.mark.parametrize("sub", ["", "has space", "x" * 65, "semi;colon", "é"])
def test_bad_subject_is_rejected(sub: str) -> None:
    token = jwt.encode({"sub": sub, "exp": int(NOW) + 60}, SECRET.encode(), algorithm="HS256")
    with pytest.raises(Unauthenticated):
        verify_token(SECRET, token, now=NOW)


def test_non_string_subject_is_rejected() -> None:
    # PyJWT's own check of "sub" is off here, so the token is built by hand.
    token = jwt.api_jws.encode(b'{"sub": 42, "exp": 1900000000}', SECRET.encode(), "HS256")
    with pytest.raises(Unauthenticated):
        verify_token(SECRET, token, now=NOW)


def test_alg_none_is_rejected() -> None:
    token = jwt.encode({"sub": "alice", "exp": int(NOW) + 60}, None, algorithm="none")
    assert token.endswith(".")  # no signature at all
    with pytest.raises(Unauthenticated):
        verify_token(SECRET, token, now=NOW)


def test_other_algorithms_are_rejected() -> None:
    token = jwt.encode({"sub": "alice", "exp": int(NOW) + 60}, SECRET.encode(), algorithm="HS512")
    with pytest.raises(Unauthenticated):
        verify_token(SECRET, token, now=NOW)


@pytest.mark.parametrize("claims", [{"sub": "alice"}, {"exp": int(NOW) + 60}])
def test_sub_and_exp_are_required(claims: dict[str, object]) -> None:
    token = jwt.encode(claims, SECRET.encode(), algorithm="HS256")
    with pytest.raises(Unauthenticated):
        verify_token(SECRET, token, now=NOW)


@pytest.mark.parametrize("token", ["", "abc", "a.b.c", "x" * 5000, None, 17])
def test_malformed_tokens_are_rejected(token: object) -> None:
    with pytest.raises(Unauthenticated):
        verify_token(SECRET, token, now=NOW)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("user", "name", "ttl"),
    [("bad user", None, 60), ("", None, 60), ("alice", "", 60), ("alice", None, 0)],
)
def test_issue_rejects_bad_input(user: str, name: str | None, ttl: int) -> None:
    with pytest.raises(Invalid):
        issue_token(SECRET, user, name=name, ttl=ttl, now=NOW)


@given(
    user=st.from_regex(r"[A-Za-z0-9_.@-]{1,64}", fullmatch=True),
    name=st.none() | st.text(min_size=1, max_size=200),
    ttl=st.integers(min_value=1, max_value=10**9),
)
def test_round_trip_for_any_valid_identity(user: str, name: str | None, ttl: int) -> None:
    token = issue_token(SECRET, user, name=name, ttl=ttl, now=NOW)
    assert verify_token(SECRET, token, now=NOW) == Identity(user, name or user)
