"""The SQL layout of the outcome store: one column per outcome field (greensched.outcomes),
bookkeeping columns, the meta table and the in-place upgrade of older layouts."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from greensched.outcomes import FIELD_NAMES, FIELDS, REQUIRED_FIELDS, FieldKind, OutcomeField

__all__ = [
    "INPUT_COLUMNS",
    "REQUIRED_COLUMNS",
    "SCHEMA_VERSION",
    "STORED_COLUMNS",
    "outcomes_table",
]

#: Version of the table layout written in the ``greensched_meta`` table.  Version 2 added
#: ``policy``, ``wait_s``, ``carbon_kg``, ``water_l``, ``cost_usd``, ``sla_met`` and
#: ``assigned_at``; a version-1 store is upgraded in place when opened.
SCHEMA_VERSION = 2

#: Columns accepted by :meth:`OutcomeStore.ingest` (``features_json`` is an alias of ``features``).
INPUT_COLUMNS: tuple[str, ...] = FIELD_NAMES
#: Columns every record must have (plus ``arrival_s`` or ``hour``).
REQUIRED_COLUMNS: tuple[str, ...] = REQUIRED_FIELDS


def _column_name(f: OutcomeField) -> str:
    return "features_json" if f.name == "features" else f.name


#: Columns of the stored table, in the order :meth:`OutcomeStore.query` returns them.
STORED_COLUMNS: tuple[str, ...] = tuple(_column_name(f) for f in FIELDS) + (
    "created_at", "ingest_id")
# Columns that define "the same outcome" (bookkeeping columns excluded).
_CONTENT_COLUMNS = tuple(c for c in STORED_COLUMNS if c not in ("created_at", "ingest_id"))
_FLOAT_COLUMNS = frozenset(f.name for f in FIELDS if f.kind is FieldKind.FLOAT)
_INT_COLUMNS = frozenset(f.name for f in FIELDS if f.kind is FieldKind.INT)
_BOOL_COLUMNS = frozenset(f.name for f in FIELDS if f.kind is FieldKind.BOOL)


# ----------------------------------------------------------------------------------------------
# Schema
# ----------------------------------------------------------------------------------------------

class _UTCDateTime(sa.types.TypeDecorator[datetime]):
    """A timestamp stored in UTC and returned as a timezone-aware UTC ``datetime``.

    PostgreSQL keeps it as ``timestamptz``; SQLite as naive UTC text (which sorts correctly).
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _sa_type(f: OutcomeField) -> Any:
    """The SQLAlchemy column type of a field."""
    return {
        FieldKind.STR: sa.String(),
        FieldKind.TEXT: sa.Text(),
        FieldKind.JSON: sa.Text(),
        FieldKind.INT: sa.BigInteger(),
        FieldKind.FLOAT: sa.Double(),
        FieldKind.BOOL: sa.Boolean(),
        FieldKind.TIME: _UTCDateTime(),
    }[f.kind]


def outcomes_table(metadata: sa.MetaData) -> sa.Table:
    """Define the ``outcomes`` table (every outcome field, see the module docstring)."""
    cols: list[sa.Column[Any]] = []
    for f in FIELDS:
        nullable = not (f.required or f.name in ("arrival_s", "hour", "measured_at"))
        cols.append(sa.Column(_column_name(f), _sa_type(f), primary_key=f.name == "job_id",
                              nullable=nullable))
    cols.append(sa.Column("created_at", _UTCDateTime(), nullable=False))
    cols.append(sa.Column("ingest_id", sa.String(), nullable=False))
    return sa.Table(
        "outcomes", metadata, *cols,
        sa.Index("ix_outcomes_measured_at", "measured_at"),
        sa.Index("ix_outcomes_model_version", "model_version"),
        sa.Index("ix_outcomes_ingest_id", "ingest_id"),
    )


_METADATA = sa.MetaData()
_OUTCOMES = outcomes_table(_METADATA)
_META = sa.Table(
    "greensched_meta", _METADATA,
    sa.Column("key", sa.String(), primary_key=True),
    sa.Column("value", sa.String(), nullable=False),
)



def _upgrade(conn: Connection, version: int) -> str:
    """Add the columns a version-``version`` store lacks (all nullable) and record the new
    version, in the caller's write transaction."""
    have = {c["name"] for c in sa.inspect(conn).get_columns("outcomes")}
    for col in _OUTCOMES.columns:
        if col.name not in have:
            kind = col.type.compile(dialect=conn.dialect)
            conn.exec_driver_sql(f"ALTER TABLE outcomes ADD COLUMN {col.name} {kind}")
    conn.execute(_META.update().where(_META.c.key == "schema_version")
                 .values(value=str(SCHEMA_VERSION)))
    return str(SCHEMA_VERSION)
