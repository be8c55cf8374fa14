"""Fixtures for fault tests: a fault-injecting proxy in front of the session's moto server,
and tables whose Krux lines are known."""

import pytest
from partner_bucket import write_tables
from s3_proxy import S3FaultProxy


@pytest.fixture
def proxy(s3_endpoint):
    """A new proxy per test, with no rules and zeroed counters; its URL is `proxy.url`."""
    proxy = S3FaultProxy(s3_endpoint).start()
    yield proxy
    proxy.stop()


@pytest.fixture(scope="session")
def tables(tmp_path_factory):
    """A local activate_to_krux database; returns (its path, its Krux lines, sorted)."""
    root = tmp_path_factory.mktemp("faults") / "activate_to_krux"
    return root, write_tables(root)
