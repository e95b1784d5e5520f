"""``vifbroker db upgrade`` and ``serve --no-upgrade`` on both stores, as an operator runs them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from vifbroker.store.sqlite_schema import LATEST as SQLITE_LATEST


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite://{tmp_path / 'broker.db'}"
    dsn: str = request.getfixturevalue("pg_dsn")
    return dsn


def vifbroker(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "vifbroker.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )


def test_serve_refuses_an_unupgraded_database_and_db_upgrade_prepares_it(
    tmp_path: Path, db_url: str
) -> None:
    serve = vifbroker(
        tmp_path, "serve", "--db", db_url, "--no-upgrade", "--listen", "127.0.0.1:0",
        "--state-dir", str(tmp_path / "state"),
    )  # fmt: skip
    assert serve.returncode == 1, serve.stderr
    assert "vifbroker db upgrade --db" in serve.stderr
    done = vifbroker(tmp_path, "db", "upgrade", "--db", db_url)
    assert done.returncode == 0, done.stderr
    assert "up to date" in done.stdout
    again = vifbroker(tmp_path, "db", "upgrade", "--db", db_url)
    assert again.returncode == 0, again.stderr


def test_serve_refuses_a_newer_schema_naming_the_version_to_run(tmp_path: Path) -> None:
    import sqlite3

    url = f"sqlite://{tmp_path / 'broker.db'}"
    assert vifbroker(tmp_path, "db", "upgrade", "--db", url).returncode == 0
    conn = sqlite3.connect(tmp_path / "broker.db")
    conn.execute(
        "INSERT INTO schema_versions (version, broker_version) VALUES (?, '7.1.0')",
        (SQLITE_LATEST + 1,),
    )
    conn.commit()
    conn.close()
    serve = vifbroker(
        tmp_path, "serve", "--db", url, "--listen", "127.0.0.1:0",
        "--state-dir", str(tmp_path / "state"),
    )  # fmt: skip
    assert serve.returncode == 1
    assert "vifbroker 7.1.0; run that version or newer" in serve.stderr
