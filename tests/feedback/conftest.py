"""Fixtures of the feedback tests: a throw-away PostgreSQL server and a store URL per backend.

PostgreSQL: the session fixture looks for ``initdb``/``pg_ctl`` (``$GREENSCHED_PG_BIN``, the
``PATH``, then Debian's ``/usr/lib/postgresql/*/bin``), creates a cluster in a temporary folder
(as the ``postgres`` system user when running as root: initdb refuses root), starts it on a free
loopback port with its unix socket in that folder, and stops it at the end. Without the
binaries or psycopg the PostgreSQL cases are skipped, saying why (on Debian/Ubuntu:
``apt-get install -y postgresql``).
"""

from __future__ import annotations

import itertools
import json
import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # outcome_factory, for the test modules and the kill-test script
    sys.path.insert(0, str(HERE))

BACKENDS = ("sqlite", "postgresql")


def _pg_bin_dir() -> Path | None:
    env = os.environ.get("GREENSCHED_PG_BIN")
    candidates = [Path(env)] if env else []
    found = shutil.which("initdb")
    if found:
        candidates.append(Path(found).parent)

    def version(p: Path) -> tuple[int, ...]:
        return tuple(int(x) for x in re.findall(r"\d+", p.parent.name)) or (0,)

    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True)
    for c in candidates:
        if (c / "initdb").is_file() and (c / "pg_ctl").is_file():
            return c
    return None


_WATCHDOG = """
import json, os, shutil, subprocess, sys, time
parent, stop, root = int(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
while True:
    try:
        os.kill(parent, 0)
    except ProcessLookupError:
        break
    time.sleep(1.0)
subprocess.run(stop, capture_output=True, timeout=60, check=False)
shutil.rmtree(root, ignore_errors=True)
"""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PgServer:
    """A running throw-away PostgreSQL server (superuser ``postgres``, trust authentication)."""

    port: int
    root: Path
    _counter: itertools.count

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_schema(self) -> tuple[str, str]:
        """A new empty schema in the ``postgres`` database: (name, store URL using it).

        Much cheaper than a database per test; the URL sets ``search_path`` through libpq's
        ``options``, so the store's tables land in the schema.
        """
        import psycopg

        name = f"gs_test_{next(self._counter)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{name}"')
        return name, f"{self.url()}?options=-csearch_path%3D{name}"

    def drop_schema(self, name: str) -> None:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')

    def create_database(self) -> str:
        import psycopg

        name = f"gs_test_{next(self._counter)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return name

    def drop_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """A PostgreSQL server for the session, or a skip naming what is missing."""
    pytest.importorskip("psycopg", reason="psycopg is not installed (pip install "
                        "'psycopg[binary]'): PostgreSQL store tests skipped")
    bindir = _pg_bin_dir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found in $GREENSCHED_PG_BIN, "
                    "PATH or /usr/lib/postgresql/*/bin: install them (Debian/Ubuntu: apt-get "
                    "install -y postgresql) to run the PostgreSQL store tests")
    prefix: list[str] = []
    owner = None
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' system user to run initdb "
                        "as (initdb refuses root)")
        runuser = shutil.which("runuser")
        if runuser is None:
            pytest.skip("running as root without runuser: cannot run initdb as 'postgres'")
        prefix = [runuser, "-u", "postgres", "--"]
    root = Path(tempfile.mkdtemp(prefix="greensched-pg-"))
    data, sock, log = root / "data", root / "sock", root / "server.log"
    sock.mkdir()
    if owner is not None:
        for p in (root, sock):
            os.chown(p, owner.pw_uid, owner.pw_gid)
    started = False
    watchdog: subprocess.Popen[bytes] | None = None

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*prefix, *args], capture_output=True, text=True, timeout=120,
                              cwd=root, check=False)

    try:
        # Should this test process die without running the teardown (SIGKILL, a timeout's
        # SIGTERM), a watchdog stops the server and removes its folder.
        watchdog = subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG, str(os.getpid()), json.dumps(
                [*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
             str(root)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        res = run(str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust",
                  "-E", "UTF8", "--no-locale", "--no-sync")
        if res.returncode != 0:
            pytest.fail(f"initdb failed:\n{res.stdout}\n{res.stderr}")
        for _ in range(3):  # the free port can be taken between probing and binding
            port = _free_port()
            opts = (f"-c listen_addresses=127.0.0.1 -p {port} -k {sock} -c max_connections=40 "
                    "-c shared_buffers=16MB")
            res = run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", opts,
                      "-w", "-t", "60", "start")
            if res.returncode == 0:
                started = True
                break
        if not started:
            text = log.read_text() if log.exists() else ""
            pytest.fail(f"pg_ctl start failed:\n{res.stdout}\n{res.stderr}\n{text}")
        yield PgServer(port, root, itertools.count())
    finally:
        if started:
            run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        if watchdog is not None:
            watchdog.kill()
            watchdog.wait()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty store location for each backend: an SQLite path or a new PG database."""
    if request.param == "sqlite":
        yield str(tmp_path / "outcomes.sqlite")
        return
    server: PgServer = request.getfixturevalue("pg_server")
    name, url = server.create_schema()
    try:
        yield url
    finally:
        server.drop_schema(name)
