"""Root test configuration: fixtures shared by every suite.

Helpers live in ``testkit`` (import them from there, not from ``conftest``).
"""

from ovs_harness import ovsdb, ovsdb_factory  # noqa: F401
from pg_harness import pg_cluster, pg_dsn  # noqa: F401
from testkit import CORPUS, REPO, STRICT, require_binary, wait_until  # noqa: F401
