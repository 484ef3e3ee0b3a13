"""The protocol package's public surface (STYLE.md habit 9)."""

from __future__ import annotations

import importlib

import pytest

import app.protocol

MODULES = ["codes", "messages", "limits", "session"]


def test_package_exports() -> None:
    assert set(app.protocol.__all__) == {
        "Action",
        "Authenticate",
        "AwaitEvent",
        "Close",
        "CloseCode",
        "ErrorCode",
        "PublishPresence",
        "Send",
        "Session",
        "SessionConfig",
        "SessionError",
        "State",
        "Submit",
        "WireEvent",
        "encode_event",
    }
    for name in app.protocol.__all__:
        assert hasattr(app.protocol, name)


@pytest.mark.parametrize("name", MODULES)
def test_every_module_declares_all(name: str) -> None:
    module = importlib.import_module(f"app.protocol.{name}")
    for exported in module.__all__:
        assert hasattr(module, exported), exported
