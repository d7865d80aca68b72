"""Fixtures of the fault scenarios: a private PostgreSQL cluster that a test may crash."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.faults.harness import PrivatePostgres
from tests.support import missing


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    """A started throwaway cluster (never the shared one on 5432), removed afterwards."""
    if not PrivatePostgres.available():
        missing("initdb (/usr/lib/postgresql/*/bin) is not installed: no private cluster")
    cluster = PrivatePostgres()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.cleanup()
