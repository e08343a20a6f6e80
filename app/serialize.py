"""JSON-safe, camelCase representations of model rows (API spelling of design.md §2)."""

import enum
import operator
from datetime import date, datetime
from decimal import Decimal

import sqlalchemy as sa

# Columns never written to audit rows, events or API answers (nor are computed ones: `public`).
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


def public(attr):
    """Whether the column attribute `attr` belongs in answers, audit rows and events.

    Secrets do not; nor do columns the database computes from others (Customer.search_text),
    which hold nothing new and which the ORM never loads.
    """
    return attr.key not in SECRET_COLUMNS and attr.columns[0].computed is None


_SPECS = {}


def _spec(mapper, camel):
    """(attribute, output name, is an id) per column of `mapper`, computed once per mapper."""
    key = (mapper, camel)
    spec = _SPECS.get(key)
    if spec is None:
        spec = []
        for attr in mapper.column_attrs:
            if not public(attr):
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


# Column types whose values json.dumps takes as they come (no json_value needed).
_PLAIN_TYPES = (sa.String, sa.Integer, sa.Boolean, sa.JSON)


_ROW_COLUMNS = {}


def row_columns(model):
    """The columns `row_serializer(model)` expects, in order (secrets left out); computed once per model."""
    found = _ROW_COLUMNS.get(model)
    if found is None:
        found = _ROW_COLUMNS[model] = tuple(attr.columns[0] for attr in sa.inspect(model).column_attrs if public(attr))
    return found


_ROW_SERIALIZERS = {}


def row_serializer(model):
    """A function turning a row of `row_columns(model)` into the dict `column_values` gives for the object.

    For lists: reading plain rows skips building ORM objects, and each column's conversion
    is chosen once here instead of by type tests on every value.
    """
    found = _ROW_SERIALIZERS.get(model)
    if found is not None:
        return found
    spec = _spec(sa.inspect(model), True)
    converters = []
    for (_attr, name, is_id), column in zip(spec, row_columns(model)):
        # Built-in callables where the column's type decides the conversion: no Python frame per value.
        if is_id and isinstance(column.type, sa.String):
            converters.append((name, None))  # UUID ids: already text
        elif is_id and isinstance(column.type, sa.Integer):
            converters.append((name, str))  # FAB's integer user ids
        elif is_id:
            converters.append((name, _id_text))
        elif isinstance(column.type, sa.Enum) and column.type.enum_class is not None:
            converters.append((name, _enum_value))
        elif isinstance(column.type, _PLAIN_TYPES):
            converters.append((name, None))
        elif isinstance(getattr(column.type, "impl_instance", column.type), sa.DateTime):
            converters.append((name, datetime.isoformat))  # what json_value does, without its type tests
        else:
            converters.append((name, json_value))

    def serialize(row):
        return {name: (value if convert is None or value is None else convert(value)) for (name, convert), value in zip(converters, row)}

    _ROW_SERIALIZERS[model] = serialize
    return serialize


_enum_value = operator.attrgetter("value")


def _id_text(value):
    # String ids everywhere in the API: FAB's integer user ids are rendered as strings.
    value = json_value(value)
    return str(value) if isinstance(value, int) else value
