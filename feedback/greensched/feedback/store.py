"""Outcome store: what each job really cost, next to what the predictor said it would cost.

One row per job that ran (``job_id`` is the primary key), holding every field of the outcome
record (:mod:`greensched.outcomes`, ``docs/outcomes.md``): the job, the DC that ran it, the
prediction and propensity it was placed with, and what was measured.

The store adds ``created_at`` (UTC ingest time) and ``ingest_id`` (one id per ingest call).

Semantics of :meth:`OutcomeStore.ingest`:

* **validated before writing** - every row is checked first; any problem raises
  :class:`OutcomeValidationError` naming row (and file line), column, value and what was
  expected, and nothing is written;
* **idempotent** - a ``job_id`` already stored with the same content is counted in
  ``duplicates_identical`` and left alone (``created_at``/``ingest_id`` are bookkeeping, and
  ``measured_at`` is compared only when the re-sent record gives one);
* **conflicts are reported, never overwritten** - a stored ``job_id`` whose content differs is
  listed in ``IngestReport.conflicts`` with the differing columns;
* **atomic** - one database transaction per call: after a crash either the whole batch is
  stored or none of it.

Backends: SQLite (a file path or ``sqlite:///...``) and PostgreSQL (``postgresql://...``,
through psycopg 3), on one SQLAlchemy Core code path.

SQLite durability: the file is put in WAL mode with ``synchronous=FULL``. In WAL mode
``synchronous=NORMAL`` already survives a *process* crash (``kill -9``: the WAL frames are in the
OS page cache once ``COMMIT`` returns), but may lose the last transactions on power loss or an OS
crash; ``FULL`` fsyncs the WAL on every commit, so an acknowledged batch survives both. The cost is
one fsync per batch, negligible next to validating the batch. Write transactions start with
``BEGIN IMMEDIATE`` so that the existence check and the insert see the same data even with
several writers.
"""

from __future__ import annotations

import math
import os
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from greensched.errors import GreenSchedError, LocatedError
from greensched.outcomes import (
    OutcomeLabels,
    OutcomeValidationError,
    RowIssue,
    ValidatedOutcomes,
    as_time,
    raise_issues,
    validate_outcomes,
)

__all__ = [
    "DEFAULT_STORE",
    "STORE_ENV",
    "default_store",
    "INPUT_COLUMNS",
    "REQUIRED_COLUMNS",
    "SCHEMA_VERSION",
    "STORED_COLUMNS",
    "IngestReport",
    "OutcomeLabels",
    "OutcomeStore",
    "OutcomeValidationError",
    "RowIssue",
    "outcomes_table",
    "store_url",
]

from greensched.feedback.store_files import read_csv as _read_csv
from greensched.feedback.store_files import read_jsonl as _read_jsonl
from greensched.feedback.store_files import read_parquet as _read_parquet
from greensched.feedback.store_schema import (
    _BOOL_COLUMNS,
    _CONTENT_COLUMNS,
    _FLOAT_COLUMNS,
    _INT_COLUMNS,
    _META,
    _METADATA,
    _OUTCOMES,
    INPUT_COLUMNS,
    REQUIRED_COLUMNS,
    SCHEMA_VERSION,
    STORED_COLUMNS,
    _upgrade,
    outcomes_table,
)

_CHUNK_ROWS = 500  # rows per SELECT ... IN (...) and per INSERT executemany


# ----------------------------------------------------------------------------------------------
# Reports and validated batches
# ----------------------------------------------------------------------------------------------

@dataclass
class IngestReport:
    """What one :meth:`OutcomeStore.ingest` call did.

    Attributes
    ----------
    inserted
        New outcomes written.
    duplicates_identical
        Records whose ``job_id`` was already stored (or repeated in the batch) with identical
        content: no-ops.
    conflicts
        ``job_id`` values already stored with *different* content; the stored rows were kept.
    conflict_columns
        For each conflicting ``job_id``, the columns whose values differ.
    ingest_id
        Id stamped on the inserted rows (``None`` when nothing was inserted).
    rows
        Records received.
    elapsed_s
        Wall time of the call.
    """

    inserted: int
    duplicates_identical: int
    conflicts: list[str] = field(default_factory=list)
    conflict_columns: dict[str, tuple[str, ...]] = field(default_factory=dict)
    ingest_id: str | None = None
    rows: int = 0
    elapsed_s: float = 0.0

    @property
    def is_ok(self) -> bool:
        """True when no conflicting duplicate was met."""
        return not self.conflicts


class _Validated:
    """A validated batch with the store's column names (``features`` as ``features_json``)."""

    def __init__(self, v: ValidatedOutcomes) -> None:
        self.columns = dict(v.columns)
        self.columns["features_json"] = self.columns.pop("features")
        self.measured_given = v.measured_given
        self.n_rows = v.n_rows

    def record(self, i: int) -> dict[str, Any]:
        return {c: self.columns[c][i] for c in _CONTENT_COLUMNS}


def _validate(records: pd.DataFrame | Iterable[Mapping[str, Any]], *,
              lines: Sequence[int] | None = None, extra: str = "error",
              labels: OutcomeLabels | None = None) -> _Validated:
    """Check a batch (:func:`greensched.outcomes.validate_outcomes`) and return it typed."""
    return _Validated(validate_outcomes(records, lines=lines, extra=extra, labels=labels))


def _raise_issues(issues: list[RowIssue], file: str | Path | None = None) -> None:
    raise_issues(issues, file)


def _same(col: str, a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if col in _FLOAT_COLUMNS:
        return math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=0.0)
    if col in _INT_COLUMNS:
        return int(a) == int(b)
    return bool(a == b)


def _differing(stored: Mapping[str, Any], new: Mapping[str, Any],
               compare_measured_at: bool) -> tuple[str, ...]:
    return tuple(c for c in _CONTENT_COLUMNS
                 if (c != "measured_at" or compare_measured_at)
                 and not _same(c, stored[c], new[c]))


# ----------------------------------------------------------------------------------------------
# The store
# ----------------------------------------------------------------------------------------------

def store_url(url_or_path: str | Path) -> str:
    """Turn a path or URL into the SQLAlchemy URL the store uses.

    ``postgresql://`` and ``postgres://`` select the psycopg 3 driver; anything that is not a
    ``sqlite:`` or ``postgresql:`` URL is taken as the path of an SQLite file.
    """
    s = str(url_or_path)
    for prefix in ("postgresql://", "postgres://"):
        if s.startswith(prefix):
            return "postgresql+psycopg://" + s[len(prefix):]
    if s.startswith(("postgresql+", "sqlite:")):
        return s
    if "://" in s:
        raise GreenSchedError(f"unsupported outcome store URL {s!r}: give a file path (SQLite) "
                              "or postgresql://user@host:port/database")
    return "sqlite:///" + str(Path(s).expanduser().resolve())


def _install_sqlite_hooks(engine: Engine, busy_timeout_s: float = 30.0) -> None:
    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # SQLAlchemy emits BEGIN itself (below), so the driver must not.
        dbapi_conn.isolation_level = None
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


class OutcomeStore:
    """Measured outcomes of jobs, with the prediction made for them; see the module docstring.

    Open with :meth:`open`; close with :meth:`close` or use as a context manager.
    """

    def __init__(self, engine: Engine, url: str) -> None:
        self._engine = engine
        self.url = url
        self.table = _OUTCOMES

    # -- opening ---------------------------------------------------------------------------
    @classmethod
    def open(cls, url_or_path: str | Path, *, create: bool = True,
             busy_timeout_s: float = 30.0) -> OutcomeStore:
        """Open (and with ``create``, initialise) the store at a path or database URL.

        Parameters
        ----------
        url_or_path
            An SQLite file path, ``sqlite:///path``, or ``postgresql://user@host:port/db``.
        create
            Create the SQLite file and the tables when absent. With ``create=False`` a missing
            store raises :class:`~greensched.errors.GreenSchedError`.
        busy_timeout_s
            How long an SQLite write waits for a lock held by another writer before failing
            with ``sqlalchemy.exc.OperationalError`` (the service answers 503 then).
        """
        url = store_url(url_or_path)
        sa_url = sa.engine.make_url(url)
        shown = sa_url.render_as_string(hide_password=True)
        if sa_url.get_backend_name() == "sqlite":
            db = sa_url.database or ""
            if db in ("", ":memory:"):
                raise GreenSchedError("an in-memory SQLite outcome store would vanish on exit; "
                                      "give a file path")
            p = Path(db)
            if not create and not p.is_file():
                raise GreenSchedError(f"no outcome store at {p}: ingest outcomes first "
                                      "(greensched feedback ingest FILE --store ...)")
            if not p.parent.is_dir():
                raise GreenSchedError(f"cannot create the outcome store {p}: folder "
                                      f"{p.parent} does not exist")
            engine = sa.create_engine(url)
            _install_sqlite_hooks(engine, busy_timeout_s)
        else:
            try:
                engine = sa.create_engine(url, pool_pre_ping=True)
            except ImportError as exc:
                raise GreenSchedError("a PostgreSQL outcome store needs psycopg 3: "
                                      "pip install 'psycopg[binary]'") from exc
        store = cls(engine, shown)
        try:
            store._init_schema(create)
        except sa.exc.OperationalError as exc:
            engine.dispose()
            raise GreenSchedError(f"cannot open the outcome store {shown}: "
                                  f"{exc.orig or exc}") from exc
        except BaseException:
            engine.dispose()
            raise
        return store

    def _init_schema(self, create: bool) -> None:
        version: str | None = None
        for attempt in range(3):
            try:
                with _WriteTx(self._engine, write=create) as conn:
                    have = sa.inspect(conn).has_table("outcomes")
                    if not have:
                        if not create:
                            raise GreenSchedError(f"{self.url} holds no outcome store: ingest "
                                                  "outcomes first")
                        _METADATA.create_all(conn)
                        conn.execute(_META.insert(), [{"key": "schema_version",
                                                       "value": str(SCHEMA_VERSION)}])
                    version = conn.execute(sa.select(_META.c.value).where(
                        _META.c.key == "schema_version")).scalar_one_or_none()
                    if version is not None and int(version) < SCHEMA_VERSION:
                        version = _upgrade(conn, int(version))
                break
            except (sa.exc.IntegrityError, sa.exc.ProgrammingError):
                # Another process created the tables at the same moment (PostgreSQL).
                if attempt == 2:
                    raise
        if version is None or int(version) > SCHEMA_VERSION:
            raise GreenSchedError(f"{self.url}: outcome store schema version {version!r} is "
                                  f"not supported by this GreenSched (supports <= "
                                  f"{SCHEMA_VERSION}); upgrade greensched")

    def close(self) -> None:
        """Release all database connections."""
        self._engine.dispose()

    def __enter__(self) -> OutcomeStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"OutcomeStore({self.url!r})"

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self._engine.dialect.name

    def _write(self) -> _WriteTx:
        return _WriteTx(self._engine)

    # -- writing ---------------------------------------------------------------------------
    def ingest(self, records: pd.DataFrame | Iterable[Mapping[str, Any]], *,
               extra: str = "error", labels: OutcomeLabels | None = None,
               _lines: Sequence[int] | None = None,
               _file: str | Path | None = None) -> IngestReport:
        """Store a batch of outcomes in one transaction; see the module docstring.

        Parameters
        ----------
        records
            A DataFrame or a list of dicts with the outcome fields.
        extra
            ``"error"`` (default) rejects unknown columns, ``"ignore"`` drops them.
        labels
            A scenario's labels (:meth:`OutcomeLabels.from_scenario`): areas, query types, DCs
            and hours outside them are refused.

        Returns
        -------
        IngestReport

        Raises
        ------
        OutcomeValidationError
            A row is invalid; nothing was written.
        """
        t0 = time.perf_counter()
        if extra not in ("error", "ignore"):
            raise ValueError(f"extra must be 'error' or 'ignore', got {extra!r}")
        if not isinstance(records, pd.DataFrame):
            records = list(records)
        if len(records) == 0:
            return IngestReport(0, 0, rows=0, elapsed_s=time.perf_counter() - t0)
        try:
            batch = _validate(records, lines=_lines, extra=extra, labels=labels)
        except OutcomeValidationError as exc:
            if _file is None:
                raise
            raise OutcomeValidationError(exc.issues, file=_file) from None

        # Collapse repeats inside the batch: identical ones are no-ops, differing ones are
        # an input error (which of them is right cannot be told).
        first: dict[str, int] = {}
        keep: list[int] = []
        dup_in_batch = 0
        issues: list[RowIssue] = []
        ids = batch.columns["job_id"]
        for i, jid in enumerate(ids):
            j = first.get(jid)
            if j is None:
                first[jid] = i
                keep.append(i)
                continue
            diff = _differing(batch.record(j), batch.record(i),
                              batch.measured_given[i] and batch.measured_given[j])
            if diff:
                line = None if _lines is None else int(_lines[i])
                issues.append(RowIssue(i, "job_id", jid, f"job_id unique within a batch (row "
                                       f"{j} has the same job_id with different {diff[0]})",
                                       line))
            else:
                dup_in_batch += 1
        if issues:
            _raise_issues(issues, _file)

        for attempt in range(3):
            try:
                report = self._ingest_once(batch, keep)
                break
            except sa.exc.IntegrityError:
                # A concurrent writer inserted one of these job_ids after our existence check
                # (possible on PostgreSQL); the transaction rolled back: classify again.
                if attempt == 2:
                    raise
        report.duplicates_identical += dup_in_batch
        report.rows = batch.n_rows
        report.elapsed_s = time.perf_counter() - t0
        return report

    def _ingest_once(self, batch: _Validated, keep: list[int]) -> IngestReport:
        now = datetime.now(UTC)
        ingest_id = uuid.uuid4().hex
        cols = batch.columns
        t = self.table
        identical = 0
        conflicts: list[str] = []
        conflict_cols: dict[str, tuple[str, ...]] = {}
        with self._write() as conn:
            existing: dict[str, dict[str, Any]] = {}
            for chunk in _chunks([cols["job_id"][i] for i in keep], _CHUNK_ROWS):
                rows = conn.execute(sa.select(*[t.c[c] for c in _CONTENT_COLUMNS])
                                    .where(t.c.job_id.in_(chunk))).mappings()
                for r in rows:
                    existing[r["job_id"]] = dict(r)
            new_rows: list[dict[str, Any]] = []
            for i in keep:
                rec = batch.record(i)
                old = existing.get(rec["job_id"])
                if old is None:
                    if rec["measured_at"] is None:
                        rec["measured_at"] = now
                    rec["created_at"] = now
                    rec["ingest_id"] = ingest_id
                    new_rows.append(rec)
                    continue
                diff = _differing(old, rec, batch.measured_given[i])
                if diff:
                    conflicts.append(rec["job_id"])
                    conflict_cols[rec["job_id"]] = diff
                else:
                    identical += 1
            for start in range(0, len(new_rows), _CHUNK_ROWS):
                self._insert_chunk(conn, new_rows[start:start + _CHUNK_ROWS])
        return IngestReport(inserted=len(new_rows), duplicates_identical=identical,
                            conflicts=conflicts, conflict_columns=conflict_cols,
                            ingest_id=ingest_id if new_rows else None)

    def _insert_chunk(self, conn: Connection, rows: list[dict[str, Any]]) -> None:
        conn.execute(self.table.insert(), rows)

    def ingest_file(self, path: str | Path, *, extra: str = "error",
                    labels: OutcomeLabels | None = None) -> IngestReport:
        """Ingest a CSV, JSON-lines (``.jsonl``/``.ndjson``) or Parquet file as one batch.

        Errors name the file, the line (CSV/JSON lines; Parquet: the 0-based row) and the column.
        """
        p = Path(path)
        if not p.is_file():
            raise LocatedError("outcomes file not found", file=p)
        suffix = p.suffix.lower()
        lines: list[int] | None
        if suffix in (".parquet", ".pq"):
            df, lines = _read_parquet(p), None
        elif suffix in (".jsonl", ".ndjson"):
            df, lines = _read_jsonl(p)
        else:
            df, lines = _read_csv(p)
        if len(df) == 0:
            raise LocatedError("no outcome rows in the file", file=p)
        return self.ingest(df, extra=extra, labels=labels, _lines=lines, _file=p)

    # -- reading ---------------------------------------------------------------------------
    def count(self) -> int:
        """Number of stored outcomes."""
        with self._engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(self.table))
                       .scalar_one())

    def query(self, since: datetime | str | pd.Timestamp | None = None,
              until: datetime | str | pd.Timestamp | None = None,
              model_version: str | None = None, dc: str | None = None) -> pd.DataFrame:
        """Outcomes with ``since <= measured_at < until`` (UTC; naive times are UTC), filtered
        by ``model_version`` and ``dc``, oldest first (ties by ``job_id``)."""
        t = self.table
        stmt = sa.select(*[t.c[c] for c in STORED_COLUMNS])
        for bound, op in ((since, "ge"), (until, "lt")):
            if bound is not None:
                ts = as_time(bound)
                if ts is None:
                    raise GreenSchedError(f"expected a timestamp, got {bound!r}")
                stmt = stmt.where(t.c.measured_at >= ts if op == "ge" else t.c.measured_at < ts)
        if model_version is not None:
            stmt = stmt.where(t.c.model_version == model_version)
        if dc is not None:
            stmt = stmt.where(t.c.dc == dc)
        stmt = stmt.order_by(t.c.measured_at, t.c.job_id)
        return self._frame(stmt)

    def window(self, n_latest: int, *, skip: int = 0) -> pd.DataFrame:
        """The ``n_latest`` most recently measured outcomes (after skipping the ``skip`` most
        recent ones), oldest first."""
        if n_latest < 0 or skip < 0:
            raise GreenSchedError(f"window sizes must be >= 0, got n_latest={n_latest!r}, "
                                  f"skip={skip!r}")
        t = self.table
        stmt = (sa.select(*[t.c[c] for c in STORED_COLUMNS])
                .order_by(t.c.measured_at.desc(), t.c.created_at.desc(), t.c.job_id.desc())
                .limit(n_latest).offset(skip))
        return self._frame(stmt).iloc[::-1].reset_index(drop=True)

    def _frame(self, stmt: sa.Select[Any]) -> pd.DataFrame:
        with self._engine.connect() as conn:
            rows = conn.execute(stmt).all()
        df = pd.DataFrame([tuple(r) for r in rows], columns=list(STORED_COLUMNS), dtype=object)
        for c in STORED_COLUMNS:
            if c in _FLOAT_COLUMNS:
                df[c] = pd.to_numeric(df[c]).astype("float64")
            elif c in _INT_COLUMNS:
                df[c] = pd.array([None if v is None else int(v) for v in df[c]], dtype="Int64")
            elif c in _BOOL_COLUMNS:
                df[c] = pd.array([None if v is None else bool(v) for v in df[c]],
                                 dtype="boolean")
            elif c in ("measured_at", "created_at", "assigned_at"):
                df[c] = pd.to_datetime(df[c], utc=True)
        if df["output_tokens"].notna().all():
            df["output_tokens"] = df["output_tokens"].astype("int64")
        for c in ("hour", "input_tokens"):
            df[c] = df[c].astype("int64")
        return df


class _WriteTx:
    """Context manager: a connection in a transaction, committed on success.

    With ``write`` (default) it is a write transaction from the start (``BEGIN IMMEDIATE`` on
    SQLite), so that what is read in it cannot change before it writes.
    """

    def __init__(self, engine: Engine, write: bool = True) -> None:
        self._engine = engine
        self._write = write

    def __enter__(self) -> Connection:
        self._conn = self._engine.connect().execution_options(greensched_write=self._write)
        try:
            self._tx = self._conn.begin()
        except BaseException:
            self._conn.close()
            raise
        return self._conn

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        try:
            if exc_type is None:
                self._tx.commit()
            else:
                self._tx.rollback()
        finally:
            self._conn.close()


def _chunks(seq: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(seq), size):
        yield seq[i:i + size]


#: Store used when neither ``--store`` nor ``GREENSCHED_STORE`` is given.
DEFAULT_STORE = "./greensched-outcomes.sqlite"
#: Environment variable naming the default store.
STORE_ENV = "GREENSCHED_STORE"


def default_store() -> str:
    """``$GREENSCHED_STORE`` if set, else :data:`DEFAULT_STORE`."""
    return os.environ.get(STORE_ENV) or DEFAULT_STORE
