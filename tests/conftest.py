import os
import secrets

# Every test process and what it starts (Ray nodes, drivers, `visionsweep` commands): Ray's token auth on, with
# one token of the test session's own in the environment, never ~/.ray/auth_token (other Rays on this machine
# use that one); no artifact progress bars.
os.environ["RAY_AUTH_MODE"] = "token"
os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


import contextlib  # noqa: E402
import time  # noqa: E402

import pytest  # noqa: E402

POSTGRES = "postgresql+psycopg2://postgres@127.0.0.1:5432"  # +psycopg2: SQLAlchemy 2.1 would pick psycopg 3


@contextlib.contextmanager
def postgres_database():
    """A fresh, empty database on the PostgreSQL at 127.0.0.1:5432 (trust auth), dropped afterwards; skips without one."""
    psycopg2 = pytest.importorskip("psycopg2", reason="psycopg2 is not installed (pip install -e '.[test]')")
    try:
        admin = psycopg2.connect("host=127.0.0.1 port=5432 user=postgres dbname=postgres", connect_timeout=3)
    except psycopg2.OperationalError as err:
        pytest.skip(f"no PostgreSQL answers at 127.0.0.1:5432 ({str(err).strip()[:120]})")
    admin.autocommit = True
    name = f"visionsweep_{os.getpid()}_{time.monotonic_ns() % 10**9}"
    with admin.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE {name}")
    try:
        yield f"{POSTGRES}/{name}"
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


@pytest.fixture
def postgres_url():
    with postgres_database() as url:
        yield url


@pytest.fixture(scope="session")
def new_postgres_database():
    """`with new_postgres_database() as url:` for fixtures of a wider scope than one test."""
    return postgres_database
