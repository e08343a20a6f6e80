"""JSON-safe, camelCase representations of model rows (API spelling of design.md §2)."""

import enum
from datetime import date, datetime
from decimal import Decimal

import sqlalchemy as sa

# Columns never written to audit rows, events or API answers.
SECRET_COLUMNS = frozenset({"password"})
# Column renames where the API spelling is not the camelCase of the column.
API_NAMES = {"scheduled_at": "scheduledAt", "is_read": "isRead"}


def to_camel(name):
    """Return the camelCase spelling of a snake_case column name."""
    if name in API_NAMES:
        return API_NAMES[name]
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def json_value(value):
    """Convert a column value to something json.dumps accepts, keeping its meaning."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Decimal):
        # Exact decimals travel as strings; whole yen amounts as plain integers strings.
        return format(value.normalize(), "f") if value == value.to_integral() else str(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return value


_SPECS = {}


def _spec(mapper, camel):
    """(attribute, output name, is an id) per column of `mapper`, computed once per mapper."""
    key = (mapper, camel)
    spec = _SPECS.get(key)
    if spec is None:
        spec = []
        for attr in mapper.column_attrs:
            if attr.key in SECRET_COLUMNS:
                continue
            name = to_camel(attr.key) if camel else attr.key
            # String ids everywhere in the API: FAB's integer user ids are rendered as strings.
            spec.append((attr.key, name, camel and (name == "id" or name.endswith("Id"))))
        spec = _SPECS[key] = tuple(spec)
    return spec


def column_values(obj, camel=True):
    """Return a dict of the row's column values, JSON-safe, secrets left out."""
    out = {}
    for attr, name, is_id in _spec(sa.inspect(obj).mapper, camel):
        value = json_value(getattr(obj, attr))
        out[name] = str(value) if is_id and isinstance(value, int) else value
    return out
