"""A durable capacity ledger: reservations and job ids in SQLite or PostgreSQL.

The online service keeps its :class:`~greensched.scheduler.assign.CapacityLedger` in memory for
speed; a :class:`DurableLedger` makes it survive a crash and lets several service replicas share
one capacity.  Every micro-batch's decisions (the jobs placed, their ticks, and the answer given
for every job id, placed or not) are written in **one transaction before any response** is sent,
so an acknowledged reservation is never lost and a job id answered once is answered the same way
after a restart.

Tables (prefix ``ledger_``, so the outcome store's database can hold them too)
---------------------------------------------------------------------------
``ledger_meta``   key/value: schema version, scenario name, hours, DCs, resources, ticks/unit
``ledger_usage``  (hour, dc, resource) → ``capacity_ticks``, ``used_ticks``; a row is created
                  on the first reservation of its key
``ledger_jobs``   job_id (primary key) → fingerprint, hour, dc (null: unplaced), ticks (JSON
                  list per resource), status (``active``, ``released``, ``expired``,
                  ``unplaced``), the answer (JSON), created_unix_s

Over-booking is impossible by construction: each (hour, dc, resource) a batch touches is updated
with one **conditional** statement, ``used_ticks = used_ticks + Δ WHERE used_ticks + Δ <=
capacity_ticks``, in a fixed key order; zero rows updated means another writer took the room
and the whole transaction is rolled back (:class:`CapacityConflict`: the caller re-reads the
touched hours and assigns again).  On PostgreSQL (READ COMMITTED) the condition is re-checked on
the newest row version after the row lock is obtained, so two replicas can never both succeed
past the capacity; on SQLite a write transaction starts with ``BEGIN IMMEDIATE`` and writers are
serialised.  A job id inserted by another replica at the same moment makes the primary key
refuse the second insert (:class:`JobIdRace`).

Reservations end when the job's outcome arrives (:meth:`DurableLedger.release`, status
``released``) or when its hour has passed (:meth:`DurableLedger.expire_before`, ``expired``):
their ticks are given back; the job id and its answer stay, so a re-sent job is still answered
from the ledger and never reserves twice.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from greensched.errors import GreenSchedError
from greensched.scheduler.assign import CapacityLedger

__all__ = [
    "LEDGER_SCHEMA_VERSION",
    "CapacityConflict",
    "DurableLedger",
    "JobIdRace",
    "LedgerBusy",
    "LedgerError",
    "Reservation",
    "ledger_url",
]

#: Version of the ledger tables' layout.
LEDGER_SCHEMA_VERSION = 1
#: Statuses of a job row.
ACTIVE, RELEASED, EXPIRED, UNPLACED = "active", "released", "expired", "unplaced"

_MD = sa.MetaData()
_META = sa.Table("ledger_meta", _MD,
                 sa.Column("key", sa.String(64), primary_key=True),
                 sa.Column("value", sa.Text, nullable=False))
_USAGE = sa.Table("ledger_usage", _MD,
                  sa.Column("hour", sa.Integer, primary_key=True),
                  sa.Column("dc", sa.String(128), primary_key=True),
                  sa.Column("resource", sa.String(128), primary_key=True),
                  sa.Column("capacity_ticks", sa.BigInteger, nullable=False),
                  sa.Column("used_ticks", sa.BigInteger, nullable=False))
_JOBS = sa.Table("ledger_jobs", _MD,
                 sa.Column("job_id", sa.String(128), primary_key=True),
                 sa.Column("fingerprint", sa.Text, nullable=False),
                 sa.Column("hour", sa.Integer, nullable=False),
                 sa.Column("dc", sa.String(128), nullable=True),
                 sa.Column("ticks", sa.Text, nullable=True),
                 sa.Column("status", sa.String(16), nullable=False),
                 sa.Column("result", sa.Text, nullable=False),
                 sa.Column("created_unix_s", sa.Float, nullable=False),
                 sa.Index("ledger_jobs_status_hour", "status", "hour"))


_SQLITE_INSERT_JOB = ("INSERT INTO ledger_jobs (job_id, fingerprint, hour, dc, ticks, status, "
                      "result, created_unix_s) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
_SQLITE_INSERT_USAGE = ("INSERT OR IGNORE INTO ledger_usage (hour, dc, resource, capacity_ticks, "
                        "used_ticks) VALUES (?, ?, ?, ?, 0)")
_SQLITE_TAKE = ("UPDATE ledger_usage SET used_ticks = used_ticks + ? WHERE hour = ? AND dc = ? "
                "AND resource = ? AND used_ticks + ? <= capacity_ticks")


class LedgerError(GreenSchedError):
    """The durable ledger cannot be opened or does not fit the scenario."""


class LedgerBusy(LedgerError):
    """The store is locked or unreachable right now; the request may be retried."""

    retry_after_s = 1


class CapacityConflict(LedgerError):
    """Another writer took the room a batch wanted in these hours; nothing was written."""

    def __init__(self, hours: Sequence[int]) -> None:
        self.hours = sorted(set(int(h) for h in hours))
        super().__init__(f"capacity in hour(s) {self.hours} was taken by another writer")


class JobIdRace(LedgerError):
    """A job id of the batch was written by another writer at the same moment."""

    retry_after_s = 1

    def __init__(self) -> None:
        super().__init__("a job id of this request was being placed by another service "
                         "replica at the same moment; retry the request")


@dataclass
class Reservation:
    """The decision for one job id, as written: ``dc`` None (and no ticks) when unplaced."""

    job_id: str
    fingerprint: str
    hour: int
    dc: str | None
    ticks: Sequence[int] | None
    result: Mapping[str, Any]


def ledger_url(url_or_path: str | Path) -> str:
    """SQLAlchemy URL of a ledger location: ``sqlite:///file``, a bare path (SQLite) or
    ``postgresql://user@host:port/db`` (psycopg 3 driver)."""
    s = str(url_or_path)
    for prefix in ("postgresql://", "postgres://"):
        if s.startswith(prefix):
            return "postgresql+psycopg://" + s[len(prefix):]
    if s.startswith(("postgresql+", "sqlite:")):
        if s in ("sqlite://", "sqlite:///", "sqlite:///:memory:"):
            raise LedgerError("an in-memory SQLite ledger would vanish on exit; give a file: "
                              "sqlite:///path/ledger.sqlite")
        return s
    if "://" in s:
        raise LedgerError(f"unsupported ledger URL {s!r}: give sqlite:///path or "
                          "postgresql://user@host:port/database")
    return "sqlite:///" + str(Path(s).expanduser().resolve())


def _is_busy(exc: BaseException) -> bool:
    text = str(getattr(exc, "orig", exc)).lower()
    if isinstance(exc, sa.exc.TimeoutError):  # connection pool exhausted
        return True
    return any(w in text for w in ("database is locked", "database table is locked", "busy",
                                   "could not connect", "connection refused", "timeout",
                                   "server closed", "terminating connection", "disk i/o",
                                   "database or disk is full", "deadlock detected",
                                   "could not serialize"))


class DurableLedger:
    """Reservations of a :class:`CapacityLedger` in a database; see the module docstring.

    Open with :meth:`open`; the in-memory ledger is then rebuilt with :meth:`load_into`.
    """

    def __init__(self, engine: Engine, url: str, ledger: CapacityLedger) -> None:
        self._engine = engine
        self.url = url
        self.dcs = list(ledger.dcs)
        self.resources = list(ledger.resources)
        self.hours = int(ledger.hours)
        self._dc_pos = {d: i for i, d in enumerate(self.dcs)}
        self._capacity = ledger.capacity_ticks  # (hour, dc, resource), int64
        self._known_keys: set[tuple[int, str, int]] = set()  # usage rows known to exist

    # -- opening ----------------------------------------------------------------------------
    @classmethod
    def open(cls, url_or_path: str | Path, ledger: CapacityLedger, *, scenario: str,
             busy_timeout_s: float = 5.0) -> DurableLedger:
        """Open (creating when absent) the ledger at ``url_or_path`` for ``ledger``'s layout.

        Raises :class:`LedgerError` when the stored ledger was made for another scenario
        (name, hours, DCs, resources, ticks per unit or capacities differ).
        """
        url = ledger_url(url_or_path)
        sa_url = sa.engine.make_url(url)
        shown = sa_url.render_as_string(hide_password=True)
        if sa_url.get_backend_name() == "sqlite":
            p = Path(sa_url.database or "")
            if not p.parent.is_dir():
                raise LedgerError(f"cannot create the ledger {p}: folder {p.parent} does not "
                                  "exist")
            engine = sa.create_engine(url)
            _sqlite_hooks(engine, busy_timeout_s)
        else:
            try:
                engine = sa.create_engine(
                    url, pool_pre_ping=True, pool_size=4, max_overflow=4,
                    pool_timeout=busy_timeout_s,
                    connect_args={"connect_timeout": max(1, int(busy_timeout_s))})
            except ImportError as exc:
                raise LedgerError("a PostgreSQL ledger needs psycopg 3: pip install "
                                  "'psycopg[binary]'") from exc
        self = cls(engine, shown, ledger)
        meta = {"schema_version": str(LEDGER_SCHEMA_VERSION), "scenario": scenario,
                "hours": str(self.hours), "dcs": json.dumps(self.dcs),
                "resources": json.dumps(self.resources),
                "ticks_per_unit": str(int(ledger.ticks_per_unit))}
        try:
            self._init(meta)
        except sa.exc.OperationalError as exc:
            engine.dispose()
            raise LedgerError(f"cannot open the ledger {shown}: {exc.orig or exc}") from exc
        except BaseException:
            engine.dispose()
            raise
        return self

    def _init(self, meta: dict[str, str]) -> None:
        for attempt in range(3):
            try:
                with self._tx() as conn:
                    _MD.create_all(conn, checkfirst=True)
                    stored = dict(conn.execute(sa.select(_META.c.key, _META.c.value)).all())
                    if not stored:
                        conn.execute(_META.insert(), [{"key": k, "value": v}
                                                      for k, v in meta.items()])
                        stored = meta
                break
            except (sa.exc.IntegrityError, sa.exc.ProgrammingError):
                if attempt == 2:  # another replica created the tables at the same moment
                    raise
        for key, want in meta.items():
            have = stored.get(key)
            if have != want:
                raise LedgerError(f"the ledger {self.url} was made for {key} {have!r}, this "
                                  f"service runs {want!r}; give another --ledger location")
        with self._engine.connect() as conn:
            rows = conn.execute(sa.select(_USAGE.c.hour, _USAGE.c.dc, _USAGE.c.resource,
                                          _USAGE.c.capacity_ticks)).all()
        r_pos = {r: i for i, r in enumerate(self.resources)}
        for h, d, r, cap in rows:
            self._known_keys.add((int(h), str(d), r_pos[r]))
            if int(cap) != int(self._capacity[h, self._dc_pos[d], r_pos[r]]):
                raise LedgerError(f"the ledger {self.url} holds capacity {int(cap)} ticks for "
                                  f"(hour {h}, {d}, {r}); the scenario gives "
                                  f"{int(self._capacity[h, self._dc_pos[d], r_pos[r]])}")

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        """A write transaction (``BEGIN IMMEDIATE`` on SQLite); busy stores → LedgerBusy."""
        try:
            with self._engine.connect() as conn:
                conn = conn.execution_options(greensched_write=True)
                with conn.begin():
                    yield conn
        except (sa.exc.OperationalError, sa.exc.TimeoutError) as exc:
            # locked, unreachable, or out of space: the request may be retried, never a 500
            if not _is_busy(exc):
                raise
            raise LedgerBusy(f"the ledger {self.url} is busy or unavailable "
                             f"({getattr(exc, 'orig', None) or exc}); retry shortly") from exc

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self._engine.dialect.name

    @property
    def shared(self) -> bool:
        """Whether other processes may write (PostgreSQL): re-read before assigning."""
        return self.dialect == "postgresql"

    def close(self) -> None:
        """Release the database connections."""
        self._engine.dispose()

    def __repr__(self) -> str:
        return f"DurableLedger({self.url!r})"

    # -- reading ------------------------------------------------------------------------------
    def used_ticks(self, hours: Iterable[int] | None = None) -> np.ndarray:
        """Reserved ticks per (hour, dc, resource) as stored (all hours, or only ``hours``
        filled in; the others 0)."""
        out = np.zeros((self.hours, len(self.dcs), len(self.resources)), dtype=np.int64)
        stmt = sa.select(_USAGE.c.hour, _USAGE.c.dc, _USAGE.c.resource, _USAGE.c.used_ticks)
        if hours is not None:
            stmt = stmt.where(_USAGE.c.hour.in_(sorted({int(h) for h in hours})))
        r_pos = {r: i for i, r in enumerate(self.resources)}
        try:
            with self._engine.connect() as conn:
                for h, d, r, used in conn.execute(stmt):
                    out[h, self._dc_pos[d], r_pos[r]] = int(used)
        except sa.exc.OperationalError as exc:
            raise LedgerBusy(f"the ledger {self.url} cannot be read ({exc.orig or exc})") \
                from exc
        return out

    def load_into(self, ledger: CapacityLedger, hours: Iterable[int] | None = None) -> None:
        """Set ``ledger``'s used ticks to the stored ones (start-up, or re-reading ``hours``)."""
        hs = None if hours is None else sorted({int(h) for h in hours})
        used = self.used_ticks(hs)
        with ledger.lock:
            if hs is None:
                ledger.used_ticks[...] = used
            else:
                ledger.used_ticks[hs] = used[hs]

    def lookup(self, job_ids: Sequence[str]) -> dict[str, tuple[str, dict[str, Any]]]:
        """Stored (fingerprint, answer) of those ``job_ids`` the ledger knows."""
        out: dict[str, tuple[str, dict[str, Any]]] = {}
        ids = list(dict.fromkeys(job_ids))
        try:
            with self._engine.connect() as conn:
                for i in range(0, len(ids), 500):
                    stmt = sa.select(_JOBS.c.job_id, _JOBS.c.fingerprint, _JOBS.c.result).where(
                        _JOBS.c.job_id.in_(ids[i:i + 500]))
                    for jid, fp, res in conn.execute(stmt):
                        out[jid] = (fp, json.loads(res))
        except sa.exc.OperationalError as exc:
            raise LedgerBusy(f"the ledger {self.url} cannot be read ({exc.orig or exc})") \
                from exc
        return out

    def counts(self) -> dict[str, int]:
        """Job rows per status."""
        with self._engine.connect() as conn:
            rows = conn.execute(sa.select(_JOBS.c.status, sa.func.count()).group_by(
                _JOBS.c.status)).all()
        return {str(s): int(n) for s, n in rows}

    def active_ticks(self) -> np.ndarray:
        """Sum of the active reservations' ticks per (hour, dc, resource), from the job rows
        (equals :meth:`used_ticks` in a consistent ledger)."""
        out = np.zeros((self.hours, len(self.dcs), len(self.resources)), dtype=np.int64)
        with self._engine.connect() as conn:
            for h, d, t in conn.execute(sa.select(_JOBS.c.hour, _JOBS.c.dc, _JOBS.c.ticks)
                                        .where(_JOBS.c.status == ACTIVE)):
                out[h, self._dc_pos[d]] += np.asarray(json.loads(t), dtype=np.int64)
        return out

    def placed_jobs(self) -> dict[str, tuple[int, str]]:
        """Every job id ever placed (any status but unplaced) → (hour, dc)."""
        with self._engine.connect() as conn:
            rows = conn.execute(sa.select(_JOBS.c.job_id, _JOBS.c.hour, _JOBS.c.dc).where(
                _JOBS.c.dc.is_not(None))).all()
        return {str(j): (int(h), str(d)) for j, h, d in rows}

    # -- writing ------------------------------------------------------------------------------
    def commit(self, reservations: Sequence[Reservation]) -> None:
        """Write a batch's decisions in one transaction, or nothing.

        Raises
        ------
        CapacityConflict
            A touched (hour, dc, resource) has no room left for the batch's reservations.
        JobIdRace
            A job id is already in the ledger (written by another replica meanwhile).
        LedgerBusy
            The store is locked or unreachable.
        """
        if not reservations:
            return
        now = time.time()
        jobs = []
        delta: dict[tuple[int, str, int], int] = {}
        for r in reservations:
            placed = r.dc is not None
            jobs.append({"job_id": r.job_id, "fingerprint": r.fingerprint, "hour": int(r.hour),
                         "dc": r.dc, "status": ACTIVE if placed else UNPLACED,
                         "ticks": json.dumps([int(t) for t in r.ticks]) if placed and r.ticks
                         is not None else None,
                         "result": json.dumps(r.result, allow_nan=False),
                         "created_unix_s": now})
            if placed and r.ticks is not None:
                for k, t in enumerate(r.ticks):
                    if int(t) > 0:
                        key = (int(r.hour), str(r.dc), k)
                        delta[key] = delta.get(key, 0) + int(t)
        try:
            with self._tx() as conn:
                if self.dialect == "sqlite":
                    created = self._commit_sqlite(conn, jobs, delta)
                else:
                    try:
                        conn.execute(_JOBS.insert(), jobs)
                    except sa.exc.IntegrityError as exc:
                        raise JobIdRace() from exc
                    created = self._apply(conn, delta, sign=1)
        except sa.exc.IntegrityError as exc:  # pragma: no cover - raised above
            raise JobIdRace() from exc
        self._known_keys.update(created)

    def _commit_sqlite(self, conn: Connection, jobs: list[dict[str, Any]],
                       delta: Mapping[tuple[int, str, int], int]) -> list[tuple[int, str, int]]:
        """:meth:`commit`'s statements on SQLite through the driver's cursor, inside the same
        ``BEGIN IMMEDIATE`` transaction: the same SQL as :meth:`_apply` (usage rows inserted
        once with ``INSERT OR IGNORE``, then one executemany of the conditional update, keys in
        order, summed row count), without building SQLAlchemy statements per batch, which cost
        more than SQLite's own work (~2 ms CPU per batch, under the interpreter lock)."""
        import sqlite3

        raw = conn.connection.driver_connection
        assert raw is not None
        cur = raw.cursor()
        try:
            try:
                cur.executemany(_SQLITE_INSERT_JOB, [
                    (j["job_id"], j["fingerprint"], j["hour"], j["dc"], j["ticks"], j["status"],
                     j["result"], j["created_unix_s"]) for j in jobs])
            except sqlite3.IntegrityError as exc:
                raise JobIdRace() from exc
            keys = sorted(delta)
            created = [key for key in keys if key not in self._known_keys]
            if created:
                cur.executemany(_SQLITE_INSERT_USAGE, [
                    (h, d, self.resources[k], int(self._capacity[h, self._dc_pos[d], k]))
                    for h, d, k in created])
            if keys:
                cur.executemany(_SQLITE_TAKE, [
                    (int(delta[key]), key[0], key[1], self.resources[key[2]], int(delta[key]))
                    for key in keys])
                if cur.rowcount != len(keys):
                    raise CapacityConflict([h for h, _, _ in keys])
        except sqlite3.OperationalError as exc:  # locked, disk: as SQLAlchemy's errors are
            if not _is_busy(exc):
                raise
            raise LedgerBusy(f"the ledger {self.url} is busy or unavailable ({exc}); retry "
                             "shortly") from exc
        finally:
            cur.close()
        return created

    def _apply(self, conn: Connection, delta: Mapping[tuple[int, str, int], int],
               sign: int) -> list[tuple[int, str, int]]:
        """Add (sign 1, conditional on capacity) or remove (sign -1) ticks.

        One executemany of ``UPDATE ledger_usage SET used_ticks = used_ticks + :t WHERE key =
        :key [AND used_ticks + :t <= capacity_ticks]`` over the keys in sorted order (so that
        replicas lock rows in the same order and never deadlock); every key must be updated
        (summed row count), else :class:`CapacityConflict`.  Returns the usage rows created here
        (remembered once the transaction has committed).
        """
        if not delta:
            return []
        keys = sorted(delta)
        created = []
        if sign > 0:
            created = [key for key in keys if key not in self._known_keys]
            if created:
                conn.execute(self._insert_ignore(), [
                    {"hour": h, "dc": d, "resource": self.resources[k],
                     "capacity_ticks": int(self._capacity[h, self._dc_pos[d], k]),
                     "used_ticks": 0} for h, d, k in created])
        rows = [{"b_h": h, "b_d": d, "b_r": self.resources[k], "b_t": int(delta[(h, d, k)]) * sign}
                for h, d, k in keys]
        t = sa.bindparam("b_t", type_=sa.BigInteger)
        cond = (_USAGE.c.hour == sa.bindparam("b_h")) & (_USAGE.c.dc == sa.bindparam("b_d")) & (
            _USAGE.c.resource == sa.bindparam("b_r"))
        if sign > 0:
            cond = cond & (_USAGE.c.used_ticks + t <= _USAGE.c.capacity_ticks)
        stmt = _USAGE.update().where(cond).values(used_ticks=_USAGE.c.used_ticks + t)
        if self._engine.dialect.supports_sane_multi_rowcount:
            updated = conn.execute(stmt, rows).rowcount  # one executemany, keys in order
        else:  # pragma: no cover - drivers without a summed executemany rowcount
            updated = sum(conn.execute(stmt, r).rowcount for r in rows)
        if updated != len(keys):
            raise CapacityConflict([h for h, _, _ in keys])
        return created

    def _insert_ignore(self) -> Any:
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            return pg_insert(_USAGE).on_conflict_do_nothing()
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(_USAGE).on_conflict_do_nothing()

    def release(self, job_ids: Sequence[str], *, status: str = RELEASED
                ) -> list[tuple[int, int, np.ndarray]]:
        """End the active reservations of ``job_ids``: status ``released``, ticks given back.

        Returns (hour, dc position, ticks) per reservation ended (unknown, unplaced or already
        ended ids are skipped), so that the caller can give them back in memory too.
        """
        ids = list(dict.fromkeys(job_ids))
        if not ids:
            return []
        return self._end(_JOBS.c.job_id.in_(ids), status)

    def expire_before(self, hour: int) -> list[tuple[int, int, np.ndarray]]:
        """End the active reservations of hours before ``hour`` (status ``expired``)."""
        return self._end(_JOBS.c.hour < int(hour), EXPIRED)

    def _end(self, where: Any, status: str) -> list[tuple[int, int, np.ndarray]]:
        ended: list[tuple[int, int, np.ndarray]] = []
        with self._tx() as conn:
            stmt = sa.select(_JOBS.c.job_id, _JOBS.c.hour, _JOBS.c.dc, _JOBS.c.ticks).where(
                where & (_JOBS.c.status == ACTIVE))
            if self.dialect == "postgresql":
                stmt = stmt.with_for_update()
            rows = conn.execute(stmt).all()
            if not rows:
                return []
            delta: dict[tuple[int, str, int], int] = {}
            done = [str(r[0]) for r in rows]
            for _, h, d, t in rows:
                ticks = np.asarray(json.loads(t), dtype=np.int64)
                ended.append((int(h), self._dc_pos[d], ticks))
                for k, v in enumerate(ticks.tolist()):
                    if v:
                        delta[(int(h), str(d), k)] = delta.get((int(h), str(d), k), 0) + int(v)
            for i in range(0, len(done), 500):
                conn.execute(_JOBS.update().where(_JOBS.c.job_id.in_(done[i:i + 500]) & (
                    _JOBS.c.status == ACTIVE)).values(status=status))
            self._apply(conn, delta, sign=-1)
        return ended


def _sqlite_hooks(engine: Engine, busy_timeout_s: float) -> None:
    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # SQLAlchemy emits BEGIN itself (below)
        cur = dbapi_conn.cursor()
        try:
            cur.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
            cur.execute("PRAGMA journal_mode = WAL")
            cur.execute("PRAGMA synchronous = FULL")
        finally:
            cur.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get("greensched_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
