"""``python -m app`` as a newcomer runs it: settings, token, and bad configuration."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app import __version__
from app.cli import main, settings_table
from app.config import VARIABLES
from app.tokens import Identity, verify_token

ROOT = Path(__file__).resolve().parents[2]
SECRET = "a test secret that is long enough for HS256"


def app(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m app ARGS`` with a clean environment plus ``env``."""
    base = {"PATH": os.environ.get("PATH", ""), "LANG": "C.UTF-8"}
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )


def test_settings_lists_every_variable() -> None:
    result = app("settings")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:2] == ["| variable | default | meaning |", "|---|---|---|"]
    assert len(lines) == 2 + len(VARIABLES)
    for line, (name, (default, meaning)) in zip(lines[2:], VARIABLES.items(), strict=True):
        assert line.startswith(f"| `{name}` | ")
        assert (default or ("(none)" if default is None else "(empty)")) in line
        assert meaning in line
    assert result.stdout == settings_table() + "\n"


def test_settings_needs_no_configuration() -> None:
    # Production mode without a secret: every other command refuses, this one answers.
    assert app("settings", env={"APP_ENV": "prod"}).returncode == 0


def test_readme_settings_table_is_the_command_output() -> None:
    readme = (ROOT / "README.md").read_text()
    assert settings_table() in readme, "README.md: paste the output of `python -m app settings`"


def test_token_prints_a_verifiable_token() -> None:
    result = app(
        "token", "--user", "alice", "--name", "Alice", "--ttl", "120", env={"APP_SECRET": SECRET}
    )
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    assert result.stdout == token + "\n"  # the token alone, fit for $(...)
    now = time.time()
    assert verify_token(SECRET, token, now=now) == Identity("alice", "Alice")
    assert verify_token(SECRET, token, now=now + 100).user == "alice"
    with pytest.raises(Exception, match="expired"):
        verify_token(SECRET, token, now=now + 200)


def test_token_in_dev_uses_the_dev_secret(tmp_path: Path) -> None:
    env = {"APP_ENV": "dev", "APP_DATA_DIR": str(tmp_path)}
    result = app("token", "--user", "bob", env=env)
    assert result.returncode == 0, result.stderr
    secret = (tmp_path / "dev-secret").read_text().strip()
    assert verify_token(secret, result.stdout.strip(), now=time.time()) == Identity("bob", "bob")


def test_token_with_a_bad_user_exits_2() -> None:
    result = app("token", "--user", "no spaces please", env={"APP_SECRET": SECRET})
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.strip().startswith("atelier: user must be")


@pytest.mark.parametrize(
    ("command", "env", "named"),
    [
        ("migrate", {"APP_SECRET": SECRET, "APP_PORT": "eighty"}, "APP_PORT"),
        ("serve", {"APP_SECRET": SECRET, "DB_POOL_SIZE": "1"}, "DB_POOL_SIZE"),
        ("dev", {"APP_SECRET": SECRET, "LOG_LEVEL": "loud"}, "LOG_LEVEL"),
        ("serve", {"APP_ENV": "prod"}, "APP_SECRET"),
        ("token", {}, "APP_SECRET"),
    ],
)
def test_bad_configuration_is_one_line_and_exit_2(
    command: str, env: dict[str, str], named: str
) -> None:
    args = [command, "--user", "alice"] if command == "token" else [command]
    result = app(*args, env=env)
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert result.stderr.startswith("atelier: ")
    assert named in result.stderr


def test_usage_errors_exit_2() -> None:
    assert app().returncode == 2
    assert app("frobnicate").returncode == 2
    assert app("token").returncode == 2  # --user is required


def test_main_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["settings"]) == 0
    assert capsys.readouterr().out == settings_table() + "\n"
    with pytest.raises(SystemExit) as version:
        main(["--version"])
    assert version.value.code == 0
    assert capsys.readouterr().out.strip() == f"atelier {__version__}"


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "atelier"
    assert script.exists(), "pip install -e . installs the `atelier` script"
    result = subprocess.run(
        [str(script), "settings"], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert result.returncode == 0
    assert result.stdout == settings_table() + "\n"


def test_token_in_process(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("APP_ENV", "prod")
    monkeypatch.setenv("APP_SECRET", SECRET)
    assert main(["token", "--user", "carol", "--ttl", "5"]) == 0
    token = capsys.readouterr().out.strip()
    assert verify_token(SECRET, token, now=time.time()) == Identity("carol", "carol")
    assert main(["token", "--user", "carol", "--ttl", "0"]) == 2
    assert "ttl" in capsys.readouterr().err


def test_bad_configuration_in_process(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("APP_ENV", "prod")
    monkeypatch.delenv("APP_SECRET", raising=False)
    assert main(["migrate"]) == 2
    assert capsys.readouterr().err == "atelier: APP_SECRET is required when APP_ENV is not 'dev'\n"
