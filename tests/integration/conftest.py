"""Integration fixtures: a real PostgreSQL server for the warehouse tests, started once."""

import pytest


@pytest.fixture(scope="session")
def postgres(tmp_path_factory):
    """A PostgreSQL server from the `pgserver` wheel (no root, no Docker), for the whole session.

    Its `get_uri()` is a unix-socket URI; `psql(sql)` runs SQL as the superuser.
    """
    import pgserver

    server = pgserver.get_server(tmp_path_factory.mktemp("postgres"), cleanup_mode="stop")
    yield server
    server.cleanup()
