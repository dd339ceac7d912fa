"""The store's tests run against the real store over HTTP on 127.0.0.1, on SQLite and on PostgreSQL.

PostgreSQL: a server on 127.0.0.1:5432 with trust auth (tools/test-deps.sh makes sure one
runs), or LINESIDE_TEST_PG=postgresql://... . Each run gets its own database, dropped at
the end; each store gets its own schema in it. If the server is not there the PostgreSQL
tests fail: they never skip.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from edge import logs
from tests.store.harness import TOKENS, StoreUnderTest, start_store

PG_ADMIN_URL = os.environ.get("LINESIDE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh database for this test run; its URL (without schema)."""
    name = f"lineside_test_{secrets.token_hex(4)}"
    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(
            f"PostgreSQL is not reachable at {PG_ADMIN_URL} ({exc}); run tools/test-deps.sh "
            "(make test does) or set LINESIDE_TEST_PG",
            pytrace=False,
        )
    with admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def db_url_for(backend: str, tmp: Path, request: pytest.FixtureRequest) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp / 'store.db'}"
    base = request.getfixturevalue("pg_database")
    return f"{base}?schema=s_{secrets.token_hex(4)}"


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def token_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sync.store import write_token_file

    path = tmp_path_factory.mktemp("tokens") / "tokens.yaml"
    write_token_file(path, [(t.name, t.token, t.lines, t.roles) for t in TOKENS.values()])
    return path


@pytest.fixture(scope="module")
def store(
    backend: str, token_file: Path, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[StoreUnderTest]:
    """One store per test module and backend; tests keep apart by using their own line ids."""
    # Another test may have pointed structlog at a capsys stream that is closed by now; the
    # store logs from its own thread for the whole module, so give it a stream that lives.
    logs.configure("info", json=True)
    url = db_url_for(backend, tmp_path_factory.mktemp(f"store-{backend}"), request)
    with start_store(url, token_file) as s:
        yield s
