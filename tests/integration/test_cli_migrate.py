"""``python -m app migrate`` against throwaway databases on the test server.

``pg_admin_dsn`` (tests/conftest.py) is a DSN of the server's maintenance database; the
databases made here are created and dropped by these tests.
"""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from app.store.migrate import migrations

ROOT = Path(__file__).resolve().parents[2]


def with_database(dsn: str, database: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path="/" + database))


def migrate(dsn: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "APP_ENV": "dev",
        "APP_DATA_DIR": str(data_dir),
        "DATABASE_URL": dsn,
    }
    return subprocess.run(
        [sys.executable, "-m", "app", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


@pytest.fixture
async def throwaway(pg_admin_dsn: str) -> AsyncIterator[Callable[[], str]]:
    """A factory of unique database names on the test server, all dropped afterwards."""
    names: list[str] = []

    def new_name() -> str:
        names.append(f"atelier_test_cli_{uuid.uuid4().hex[:12]}")
        return names[-1]

    yield new_name
    conn = await asyncpg.connect(pg_admin_dsn)
    try:
        for name in names:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def applied(dsn: str) -> list[str]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT name FROM schema_migrations ORDER BY number")
    finally:
        await conn.close()
    return [row["name"] for row in rows]


async def test_migrate_creates_the_database_and_applies_everything(
    pg_admin_dsn: str, throwaway: Callable[[], str], tmp_path: Path
) -> None:
    name = throwaway()
    dsn = with_database(pg_admin_dsn, name)
    expected = [migration.name for migration in migrations()]

    first = migrate(dsn, tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == [f"created database {name}"] + [
        f"applied {migration}" for migration in expected
    ]
    assert await applied(dsn) == expected

    again = migrate(dsn, tmp_path)
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines() == [f"database {name} is up to date"]
    assert await applied(dsn) == expected


async def test_migrate_an_existing_empty_database(
    pg_admin_dsn: str, throwaway: Callable[[], str], tmp_path: Path
) -> None:
    name = throwaway()
    conn = await asyncpg.connect(pg_admin_dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    dsn = with_database(pg_admin_dsn, name)
    result = migrate(dsn, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "created database" not in result.stdout
    assert await applied(dsn) == [migration.name for migration in migrations()]


def test_migrate_without_a_server_says_so(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port where nothing listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    dsn = f"postgresql://postgres:hunter2@127.0.0.1:{port}/atelier"
    result = migrate(dsn, tmp_path)
    assert result.returncode == 1
    assert "DATABASE_URL" in result.stderr
    assert "hunter2" not in result.stderr
    assert "Traceback" not in result.stderr


def test_migrate_runner_in_process(
    pg_admin_dsn: str, throwaway: Callable[[], str], tmp_path: Path
) -> None:
    from app.config import Settings
    from app.ops import migrate as runner

    name = throwaway()
    dsn = with_database(pg_admin_dsn, name)
    settings = Settings.from_env(
        {"APP_ENV": "dev", "APP_DATA_DIR": str(tmp_path), "DATABASE_URL": dsn}
    )
    out = io.StringIO()
    assert runner.run(settings, out=out) == 0
    assert out.getvalue().splitlines()[0] == f"created database {name}"
    out = io.StringIO()
    assert runner.run(settings, out=out) == 0
    assert out.getvalue() == f"database {name} is up to date\n"


def test_redact_hides_only_the_password() -> None:
    from app.ops.migrate import redact

    assert redact("postgresql://u:secret@h:5/db") == "postgresql://u:***@h:5/db"
    assert redact("postgresql://u@h/db") == "postgresql://u@h/db"
    assert redact("postgresql://u:pw@[::1]:5432/db") == "postgresql://u:***@[::1]:5432/db"
