from __future__ import annotations

import pytest

from app.domain import can_manage, can_read, can_write, valid_id, valid_user


@pytest.mark.parametrize(
    ("role", "read", "write", "manage"),
    [
        ("owner", True, True, True),
        ("editor", True, True, False),
        ("viewer", True, False, False),
        (None, False, False, False),
        ("admin", False, False, False),
    ],
)
def test_roles(role: str | None, read: bool, write: bool, manage: bool) -> None:
    assert can_read(role) is read  # type: ignore[arg-type]
    assert can_write(role) is write  # type: ignore[arg-type]
    assert can_manage(role) is manage  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("a", True),
        ("A-z_09", True),
        ("x" * 64, True),
        ("x" * 65, False),
        ("", False),
        ("a b", False),
        ("a.b", False),
        ("a@b", False),
        ("abc\n", False),
        ("é", False),
    ],
)
def test_valid_id(value: str, ok: bool) -> None:
    assert valid_id(value) is ok


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("alice", True),
        ("alice.smith@example.com", True),
        ("a-b_c", True),
        ("u" * 64, True),
        ("u" * 65, False),
        ("", False),
        ("a b", False),
        ("a/b", False),
        ("alice\n", False),
    ],
)
def test_valid_user(value: str, ok: bool) -> None:
    assert valid_user(value) is ok


def test_validators_refuse_non_strings() -> None:
    assert valid_id(5) is False  # type: ignore[arg-type]
    assert valid_user(None) is False  # type: ignore[arg-type]
