"""Many-to-one fields of /api/v1 bodies: an id of an existing row, or a 400 naming the field.

marshmallow-sqlalchemy's `Related` takes a dict as the related row's columns and builds a
new row from an id it cannot find, so `{"customer": {"x": 1}}` raised TypeError and
`{"user": "deep"}` reached the database as an integer cast: FAB answered both with a 500
("Fatal error"). `IdRelated` accepts only an id of the related key's type and looks it up.
"""

from flask_appbuilder.api.convert import Model2SchemaConverter
from marshmallow import ValidationError
from marshmallow_sqlalchemy.fields import Related

from views.datamodels import is_uuid

# PostgreSQL's integer: a larger id cannot exist and would fail the cast.
INT_MIN, INT_MAX = -(2**31), 2**31 - 1


class IdRelated(Related):
    """A many-to-one relation given by the related row's id (a string or an integer)."""

    def _deserialize(self, value, attr, data, **kwargs):
        """Return the existing related row whose id is `value`, or raise ValidationError."""
        if len(self.related_keys) != 1:
            return super()._deserialize(value, attr, data, **kwargs)
        key = self.related_keys[0]
        model = self.related_model.__name__.lower()
        # The services name the field by its id (assignedSalesId, customerId): both spellings in the message.
        alias = "".join(p if i == 0 else p.title() for i, p in enumerate((self.name or "").split("_"))) + "Id"
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise ValidationError(f"must be the id of a {model} ({alias}), not {type(value).__name__}")
        if key.columns[0].type.python_type is int:
            text = str(value).strip()
            if not text.lstrip("-").isdigit() or not INT_MIN <= int(text) <= INT_MAX:
                raise ValidationError(f"must be the integer id of a {model} ({alias})")
            value = int(text)
        elif not is_uuid(value):
            raise ValidationError(f"no {model} with this id ({alias})")
        row = self.session.get(self.related_model, value if isinstance(value, int) else str(value))
        if row is None:
            raise ValidationError(f"no {model} with this id ({alias})")
        return row


class CrmSchemaConverter(Model2SchemaConverter):
    """FAB's model-to-schema converter with `IdRelated` for plain many-to-one fields."""

    def _column2relation(self, datamodel, column, nested=False, parent_schema_name=None):
        field = super()._column2relation(datamodel, column, nested=nested, parent_schema_name=parent_schema_name)
        if nested or not datamodel.is_relation_many_to_one(column.name) or type(field) is not Related:
            return field
        strict = IdRelated(columns=field.columns, required=field.required, allow_none=field.allow_none)
        strict.unique = field.unique
        return strict
