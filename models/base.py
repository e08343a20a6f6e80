"""Column types and mixins shared by every model."""

import enum
import uuid
from datetime import datetime, timezone

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator


def new_id():
    """Return a new UUID4 string primary key."""
    return str(uuid.uuid4())


def utcnow():
    """Return the current time as a timezone-aware UTC datetime."""
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator):
    """A timestamp stored with time zone and always read back as aware UTC.

    SQLite drops the offset, so values are normalised on the way in and out; naive
    input is taken as UTC.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)

    def result_processor(self, dialect, coltype):
        """`process_result_value` as one function (TypeDecorator's wrapper adds a call per value), when the driver has no processor of its own."""
        if self.impl_instance.result_processor(dialect, coltype) is not None:
            return super().result_processor(dialect, coltype)
        utc = timezone.utc

        def process(value):
            if value is None:
                return None
            return value.replace(tzinfo=utc) if value.tzinfo is None else value.astimezone(utc)

        return process


def id_column():
    """A UUID string primary key column."""
    return sa.Column(sa.String(36), primary_key=True, default=new_id)


def enum_column(enum_cls, name, **kwargs):
    """A VARCHAR enum column with a CHECK constraint (portable across SQLite and PostgreSQL)."""
    return sa.Column(
        sa.Enum(
            enum_cls,
            name=name,
            native_enum=False,
            create_constraint=True,
            validate_strings=True,
            values_callable=lambda e: [m.value for m in e],
            length=32,
        ),
        **kwargs,
    )


class StrEnum(str, enum.Enum):
    """An enum whose members compare equal to their string values."""

    def __str__(self):
        return self.value


class TimestampMixin:
    """createdAt / updatedAt columns maintained by the database session."""

    created_at = sa.Column(UTCDateTime, nullable=False, default=utcnow)
    updated_at = sa.Column(UTCDateTime, nullable=False, default=utcnow, onupdate=utcnow)
