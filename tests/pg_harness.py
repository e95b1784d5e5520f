"""A throwaway PostgreSQL cluster for tests and benchmarks (Debian's ``postgresql``).

One cluster per pytest session, a fresh database per test::

    async def test_x(pg_dsn):              # postgresql://postgres@127.0.0.1:PORT/t_…
        store = open_store(pg_dsn)          # an empty database, dropped after the test

    def test_y(pg_cluster):                 # the session's cluster itself
        dsn = pg_cluster.create_database()  # as many databases as the test wants
        pg_cluster.stop(mode="immediate")   # a database crash …
        pg_cluster.start()                  # … and its recovery (same port, same data)

``PgCluster`` also works on its own (``with PgCluster.temporary() as pg:``), e.g.
in a benchmark or for a test that must not share the session's cluster.

How it runs: ``initdb`` into a temporary directory (``-A trust``, superuser
``postgres``), then ``pg_ctl start`` with a free loopback port, the socket in
its own directory and ``fsync`` left on (durability tests kill things and must
see what a real server keeps). PostgreSQL refuses to run as root: when the
tests run as root, the directory is given to the ``postgres`` user and
``initdb``/``pg_ctl`` run through ``runuser -u postgres --``. SQL from the
harness goes through ``psql`` over TCP, so the harness needs no Python driver.

Binaries come from ``/usr/lib/postgresql/<newest>/bin`` (Debian puts them
there, not on PATH), else from PATH. Without them the fixtures skip, except
where ``VIFBROKER_TEST_STRICT`` or ``CI`` is set: there they fail (see testkit).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pytest

from testkit import free_port, skip_or_fail

DEBIAN_ROOT = Path("/usr/lib/postgresql")
TOOLS = ("initdb", "pg_ctl", "postgres", "psql")
StopMode = Literal["smart", "fast", "immediate"]


class PgError(RuntimeError):
    pass


def find_bindir() -> Path | None:
    """The newest Debian ``/usr/lib/postgresql/N/bin`` holding every tool, else PATH's."""
    versions = []
    for initdb in DEBIAN_ROOT.glob("*/bin/initdb"):
        bindir = initdb.parent
        number = re.match(r"\d+", bindir.parent.name)
        if number and all(os.access(bindir / t, os.X_OK) for t in TOOLS):
            versions.append((int(number.group()), bindir))
    if versions:
        return max(versions)[1]
    initdb = shutil.which("initdb")
    if initdb and all(shutil.which(t) for t in TOOLS):
        return Path(initdb).resolve().parent
    return None


def require_postgres() -> Path:
    """The PostgreSQL bin directory; skip (or, strict, fail) when there is none."""
    bindir = find_bindir()
    if bindir is None:
        skip_or_fail(
            "PostgreSQL not installed (Debian package postgresql: "
            f"{DEBIAN_ROOT}/*/bin/initdb not found)"
        )
    return bindir


class PgCluster:
    """One PostgreSQL server: data, socket and log under ``directory``."""

    _names = itertools.count(1)

    def __init__(self, directory: Path, bindir: Path, port: int | None = None) -> None:
        self.dir = directory
        self.bindir = bindir
        self.port = port or free_port()
        self.data = directory / "data"
        self.sockdir = directory / "sock"
        self.log = directory / "postgres.log"
        self._as_postgres = os.geteuid() == 0

    # -- addresses -----------------------------------------------------------------
    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    @property
    def running(self) -> bool:
        return self._ctl("status", check=False).returncode == 0

    # -- lifecycle -------------------------------------------------------------------
    def init(self) -> PgCluster:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.sockdir.mkdir(exist_ok=True)
        if self._as_postgres:
            pw = pwd.getpwnam("postgres")
            for path in (self.dir, self.sockdir):
                os.chown(path, pw.pw_uid, pw.pw_gid)
        self._run(
            [str(self.bindir / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
             "-E", "UTF8", "--locale=C.UTF-8", "--no-instructions"],
        )  # fmt: skip
        return self

    def start(self) -> PgCluster:
        """Start the server (again: same port, same data) and wait until it accepts SQL."""
        options = (
            f"-p {self.port} -k {self.sockdir} -c listen_addresses=127.0.0.1 "
            "-c fsync=on -c max_connections=300 -c shared_buffers=32MB"
        )
        self._ctl("start", "-w", "-t", "60", "-l", str(self.log), "-o", options)
        return self

    def stop(self, mode: StopMode = "fast") -> None:
        """Stop the server; ``immediate`` is a crash (no checkpoint, recovery at start)."""
        if self.running:
            self._ctl("stop", "-w", "-t", "60", "-m", mode)

    # -- SQL -------------------------------------------------------------------------
    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run ``sql`` through psql (``ON_ERROR_STOP``); return unaligned, tuples-only output."""
        proc = subprocess.run(
            [str(self.bindir / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U",
             "postgres", "-d", database, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
             "-c", sql],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        if proc.returncode != 0:
            raise PgError(f"psql failed ({proc.returncode}): {proc.stderr.strip()}")
        return proc.stdout.strip()

    def create_database(self, name: str | None = None, template: str = "template0") -> str:
        """A new empty database (a copy of ``template``); return its DSN."""
        name = name or f"t_{os.getpid()}_{next(self._names)}"
        self.psql(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        return self.dsn(name)

    def drop_database(self, name: str) -> None:
        self.psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    # -- plumbing --------------------------------------------------------------------
    def _ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self._run([str(self.bindir / "pg_ctl"), "-D", str(self.data), *args], check=check)

    def _run(self, argv: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        if self._as_postgres:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        # pg_ctl start leaves the server holding inherited pipes open: log to a file.
        with tempfile.TemporaryFile("w+") as out:
            proc = subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, text=True,
                                  timeout=120, cwd=self.dir)  # fmt: skip
            out.seek(0)
            output = out.read()
        if check and proc.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise PgError(f"{' '.join(argv)} failed ({proc.returncode}): {output}\n{log}")
        return subprocess.CompletedProcess(argv, proc.returncode, output, "")

    @classmethod
    @contextlib.contextmanager
    def temporary(cls, bindir: Path | None = None) -> Iterator[PgCluster]:
        """A started cluster in a temporary directory; stopped and removed on exit."""
        bindir = bindir or find_bindir()
        if bindir is None:
            raise PgError(f"PostgreSQL not installed ({DEBIAN_ROOT}/*/bin/initdb not found)")
        tmp = Path(tempfile.mkdtemp(prefix="vifbroker-pg-"))
        cluster = cls(tmp, bindir)
        try:
            cluster.init().start()
            yield cluster
        finally:
            with contextlib.suppress(PgError, subprocess.TimeoutExpired):
                cluster.stop(mode="immediate")
            _wait_gone(cluster.data / "postmaster.pid", 10.0)
            shutil.rmtree(tmp, ignore_errors=True)


def _wait_gone(path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while path.exists() and time.monotonic() < deadline:
        time.sleep(0.02)


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """The session's PostgreSQL server: started on first use, stopped at the end.

    A test that stops it (``stop(mode="immediate")``) must ``start()`` it again
    before it returns, in a ``finally``.
    """
    bindir = require_postgres()
    with PgCluster.temporary(bindir) as cluster:
        yield cluster


@pytest.fixture
def pg_dsn(pg_cluster: PgCluster) -> Iterator[str]:
    """DSN of a fresh, empty database on the session's cluster; dropped after the test."""
    if not pg_cluster.running:
        pg_cluster.start()
    dsn = pg_cluster.create_database()
    try:
        yield dsn
    finally:
        if not pg_cluster.running:
            pg_cluster.start()
        pg_cluster.drop_database(dsn.rsplit("/", 1)[1])
