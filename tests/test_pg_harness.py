"""The throwaway PostgreSQL harness: what other tests rely on must itself be checked."""

from __future__ import annotations

import pytest

from pg_harness import PgCluster

pytestmark = pytest.mark.postgres


def test_fresh_database_per_test_is_empty_and_isolated(pg_cluster: PgCluster, pg_dsn: str) -> None:
    name = pg_dsn.rsplit("/", 1)[1]
    assert pg_dsn == f"postgresql://postgres@127.0.0.1:{pg_cluster.port}/{name}"
    tables = pg_cluster.psql("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'", name)
    assert tables == "0"
    pg_cluster.psql("CREATE TABLE leak (x int)", name)
    other = pg_cluster.create_database()
    try:
        other_name = other.rsplit("/", 1)[1]
        assert pg_cluster.psql("SELECT to_regclass('public.leak') IS NULL", other_name) == "t"
    finally:
        pg_cluster.drop_database(other.rsplit("/", 1)[1])


def test_server_is_durable_loopback_only(pg_cluster: PgCluster) -> None:
    assert pg_cluster.psql("SHOW fsync") == "on"
    assert pg_cluster.psql("SHOW listen_addresses") == "127.0.0.1"
    assert pg_cluster.psql("SHOW unix_socket_directories") == str(pg_cluster.sockdir)


def test_immediate_stop_keeps_committed_rows(pg_cluster: PgCluster, pg_dsn: str) -> None:
    name = pg_dsn.rsplit("/", 1)[1]
    pg_cluster.psql("CREATE TABLE t (x int); INSERT INTO t VALUES (1), (2)", name)
    pg_cluster.stop(mode="immediate")
    try:
        assert not pg_cluster.running
    finally:
        pg_cluster.start()
    assert pg_cluster.running
    assert pg_cluster.psql("SELECT sum(x) FROM t", name) == "3"


@pytest.mark.parametrize(("strict", "outcome"), [(False, pytest.skip.Exception),
                                                 (True, pytest.fail.Exception)])  # fmt: skip
def test_missing_postgres_skips_only_outside_strict_mode(
    monkeypatch: pytest.MonkeyPatch, strict: bool, outcome: type[BaseException]
) -> None:
    import pg_harness
    import testkit

    monkeypatch.setattr(pg_harness, "find_bindir", lambda: None)
    monkeypatch.setattr(testkit, "STRICT", strict)
    with pytest.raises(outcome, match="PostgreSQL not installed"):
        pg_harness.require_postgres()
